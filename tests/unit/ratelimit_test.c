/* ratelimit_test.c - failed-login limits per (address, user): the window,
 * Retry-After, success, independence of pairs, eviction, threads. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>

#include "auth/ratelimit.h"

#include "common/banned.h"

static struct ratelimit *
new_rl(unsigned max, int window, size_t entries)
{
    struct err e = {0};
    struct ratelimit *rl = ratelimit_new(max, window, entries, &e);
    cr_assert_not_null(rl, "%s", e.msg);
    return rl;
}

Test(ratelimit, under_the_limit_may_try)
{
    struct ratelimit *rl = new_rl(3, 60, 100);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "alice", 1000), 0);
    ratelimit_fail(rl, "10.0.0.1", "alice", 1000);
    ratelimit_fail(rl, "10.0.0.1", "alice", 1001);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "alice", 1002), 0);
    ratelimit_free(rl);
}

Test(ratelimit, at_the_limit_retry_after_counts_down_to_the_window_end)
{
    struct ratelimit *rl = new_rl(3, 60, 100);
    ratelimit_fail(rl, "10.0.0.1", "alice", 1000);
    ratelimit_fail(rl, "10.0.0.1", "alice", 1010);
    ratelimit_fail(rl, "10.0.0.1", "alice", 1020);
    /* the window runs from the first counted failure: 1000 + 60 */
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "alice", 1020), 40);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "alice", 1050), 10);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "alice", 1059), 1);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "alice", 1060), 0);
    /* a new window starts empty */
    ratelimit_fail(rl, "10.0.0.1", "alice", 1061);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "alice", 1061), 0);
    ratelimit_free(rl);
}

Test(ratelimit, failures_outside_the_window_do_not_add_up)
{
    struct ratelimit *rl = new_rl(2, 10, 100);
    ratelimit_fail(rl, "a", "u", 100);
    ratelimit_fail(rl, "a", "u", 111); /* the first one is out of the window */
    cr_assert_eq(ratelimit_check(rl, "a", "u", 112), 0);
    ratelimit_fail(rl, "a", "u", 112);
    cr_assert_eq(ratelimit_check(rl, "a", "u", 112), 9);
    ratelimit_free(rl);
}

Test(ratelimit, success_clears_the_pair)
{
    struct ratelimit *rl = new_rl(2, 60, 100);
    ratelimit_fail(rl, "10.0.0.1", "alice", 5);
    ratelimit_fail(rl, "10.0.0.1", "alice", 5);
    cr_assert_gt(ratelimit_check(rl, "10.0.0.1", "alice", 6), 0);
    ratelimit_success(rl, "10.0.0.1", "alice");
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "alice", 6), 0);
    ratelimit_fail(rl, "10.0.0.1", "alice", 7);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "alice", 7), 0);
    ratelimit_free(rl);
}

Test(ratelimit, pairs_are_independent)
{
    struct ratelimit *rl = new_rl(1, 60, 100);
    ratelimit_fail(rl, "10.0.0.1", "alice", 5);
    cr_assert_gt(ratelimit_check(rl, "10.0.0.1", "alice", 5), 0);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.2", "alice", 5), 0);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "bob", 5), 0);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "", 5), 0);
    /* the pair is not the concatenation: "10.0.0.1" + "alice" != "10.0.0.1a" + "lice" */
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1a", "lice", 5), 0);
    ratelimit_fail(rl, "10.0.0.1", "", 5);
    cr_assert_gt(ratelimit_check(rl, "10.0.0.1", "", 5), 0);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "bob", 5), 0);
    ratelimit_success(rl, "10.0.0.1", "alice");
    cr_assert_gt(ratelimit_check(rl, "10.0.0.1", "", 5), 0);
    ratelimit_free(rl);
}

Test(ratelimit, full_table_evicts_the_oldest)
{
    struct ratelimit *rl = new_rl(1, 60, 3);
    ratelimit_fail(rl, "a", "u", 10);
    ratelimit_fail(rl, "b", "u", 11);
    ratelimit_fail(rl, "c", "u", 12);
    ratelimit_fail(rl, "a", "u", 13); /* a's last failure is now the newest */
    ratelimit_fail(rl, "d", "u", 14); /* evicts b */
    cr_assert_gt(ratelimit_check(rl, "a", "u", 14), 0);
    cr_assert_eq(ratelimit_check(rl, "b", "u", 14), 0);
    cr_assert_gt(ratelimit_check(rl, "c", "u", 14), 0);
    cr_assert_gt(ratelimit_check(rl, "d", "u", 14), 0);
    /* many more pairs than slots: the table stays bounded and working */
    for (int i = 0; i < 1000; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.1.%d.%d", i / 256, i % 256);
        ratelimit_fail(rl, addr, "x", 20 + i);
    }
    cr_assert_gt(ratelimit_check(rl, "10.1.3.231", "x", 1019), 0);
    cr_assert_eq(ratelimit_check(rl, "d", "u", 1019), 0);
    ratelimit_free(rl);
}

Test(ratelimit, zero_max_failures_never_limits)
{
    struct ratelimit *rl = new_rl(0, 60, 10);
    for (int i = 0; i < 100; i++)
        ratelimit_fail(rl, "10.0.0.1", "alice", 5);
    cr_assert_eq(ratelimit_check(rl, "10.0.0.1", "alice", 5), 0);
    ratelimit_free(rl);
}

#define THREADS 4
#define PER_THREAD 250

static struct ratelimit *shared, *own;

static void *
hammer(void *arg)
{
    int id = (int)(long)arg;
    char addr[32];
    snprintf(addr, sizeof(addr), "192.0.2.%d", id);
    for (int i = 0; i < PER_THREAD; i++) {
        ratelimit_fail(shared, "198.51.100.1", "shared", 100);
        /* a private pair: limited after 3, cleared by success */
        for (int j = 0; j < 3; j++)
            ratelimit_fail(own, addr, "own", 100);
        if (ratelimit_check(own, addr, "own", 100) == 0)
            return (void *)1;
        ratelimit_success(own, addr, "own");
        if (ratelimit_check(own, addr, "own", 100) != 0)
            return (void *)1;
    }
    return NULL;
}

Test(ratelimit, threads_lose_no_update)
{
    /* the shared pair must reach exactly THREADS * PER_THREAD + 1 failures */
    shared = new_rl(THREADS * PER_THREAD + 1, 60, 64);
    own = new_rl(3, 60, 64);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, (void *)i), 0);
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad |= r != NULL;
    }
    cr_assert_eq(bad, 0, "a private pair was not limited or not cleared");
    cr_assert_eq(ratelimit_check(shared, "198.51.100.1", "shared", 100), 0);
    ratelimit_fail(shared, "198.51.100.1", "shared", 100);
    cr_assert_eq(ratelimit_check(shared, "198.51.100.1", "shared", 100), 60);
    ratelimit_free(shared);
    ratelimit_free(own);
}
