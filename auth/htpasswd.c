/* htpasswd.c - users and bcrypt hashes from an htpasswd file, a cache of
 * recent successful checks, reload on change.
 *
 * Concurrency: the current content is one immutable snapshot (struct content)
 * behind a rwlock; readers hold the read lock only to look a user up and copy
 * its hash and generation out, never while bcrypt runs, so a reload waits for
 * no bcrypt. A reload builds the new snapshot without any lock, swaps the
 * pointer under the write lock and frees the old one after unlocking.
 *
 * Generations: every user line gets a process-unique generation number; a
 * reload keeps it when the user's hash is byte-for-byte unchanged and gives a
 * new one otherwise. A cache entry remembers the generation it was verified
 * against, so a changed or removed line (or a removed and re-added one)
 * invalidates it at once, and an unrelated reload does not.
 *
 * Cache: CACHE_WAYS-way set-associative, CACHE_SETS sets,
 * keyed by HMAC-SHA256(per-object random key, user NUL password): neither the
 * password nor an unkeyed (dictionary-attackable) hash of it is ever kept.
 * The HMAC uses precomputed inner/outer SHA-256 states so htpasswd_cached
 * allocates nothing (OpenSSL 3's EVP and one-shot HMAC allocate a context per
 * call). */
#include "auth/htpasswd.h"

/* the low-level SHA-256 calls are deprecated in OpenSSL 3 but are the only
 * allocation-free ones (see above) */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "common/banned.h"

#define FILE_MAX (64u << 20) /* far above HTPASSWD_MAX_USERS lines */
#define BCRYPT_LEN 60        /* "$2y$NN$" + 22 salt + 31 hash characters */
#define PASS_MAX 4096        /* longer passwords are refused unchecked */
#define DEFAULT_COST 10
#define CACHE_WAYS 4
#define CACHE_SETS 1024 /* 4096 entries */

struct user {
    const char *name; /* into content.text */
    char hash[BCRYPT_LEN + 1];
    uint64_t gen;
    int line;
};

/* one loaded file: immutable once published */
struct content {
    char *text;
    struct user *users; /* sorted by name */
    size_t n;
    char dummy[BCRYPT_LEN + 1]; /* what an unknown user is checked against */
};

struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    long long mtime_sec, mtime_nsec;
    int err; /* errno of a failed stat, else 0 */
};

struct cache_entry {
    unsigned char mac[SHA256_DIGEST_LENGTH];
    uint64_t gen; /* 0: empty slot */
    long long at;
};

struct htpasswd {
    char *path;
    pthread_rwlock_t lock; /* guards cur */
    struct content *cur;

    pthread_mutex_t refresh_lock; /* one reload at a time; guards below */
    struct file_id seen;          /* of the last file read (or tried) */
    long long last_stat;
    int stat_once;

    pthread_mutex_t cache_lock;
    SHA256_CTX mac_inner, mac_outer; /* after absorbing key^ipad / key^opad */
    struct cache_entry cache[CACHE_SETS][CACHE_WAYS];
};

static uint64_t gen_counter; /* atomic: process-wide generations, 0 unused */

static uint64_t
next_gen(void)
{
    return __atomic_add_fetch(&gen_counter, 1, __ATOMIC_RELAXED);
}

static void
content_free(struct content *c)
{
    if (!c)
        return;
    free(c->users);
    free(c->text);
    free(c);
}

static int
user_cmp(const void *a, const void *b)
{
    const struct user *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    return r ? r : (x->line > y->line) - (x->line < y->line);
}

static const struct user *
content_find(const struct content *c, const char *name)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(name, c->users[mid].name);
        if (r == 0)
            return &c->users[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int
is_b64(char ch)
{
    return ch == '.' || ch == '/' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
           (ch >= '0' && ch <= '9');
}

/* the cost of a well-formed "$2y$NN$<53 chars>" hash, or -1 */
static int
bcrypt_cost(const char *h, size_t n)
{
    if (n != BCRYPT_LEN || h[0] != '$' || h[1] != '2' ||
        (h[2] != 'y' && h[2] != 'b' && h[2] != 'a') || h[3] != '$' || h[4] < '0' || h[4] > '9' ||
        h[5] < '0' || h[5] > '9' || h[6] != '$')
        return -1;
    int cost = (h[4] - '0') * 10 + (h[5] - '0');
    if (cost < 4 || cost > 31)
        return -1;
    for (size_t i = 7; i < n; i++)
        if (!is_b64(h[i]))
            return -1;
    return cost;
}

/* names the scheme of a refused hash, never the hash itself */
static const char *
scheme_name(const char *h, size_t n)
{
    if (n >= 6 && memcmp(h, "$apr1$", 6) == 0)
        return "MD5 ($apr1$)";
    if (n >= 5 && memcmp(h, "{SHA}", 5) == 0)
        return "SHA-1 ({SHA})";
    if (n >= 3 && memcmp(h, "$1$", 3) == 0)
        return "MD5-crypt ($1$)";
    if (n >= 3 && (memcmp(h, "$5$", 3) == 0 || memcmp(h, "$6$", 3) == 0))
        return "SHA-crypt ($5$/$6$)";
    if (n >= 2 && h[0] == '$' && h[1] == '2')
        return "malformed bcrypt";
    if (n == 13)
        return "crypt(3) DES or plain text";
    if (n == 0)
        return "empty";
    return "plain text or unknown";
}

static int
valid_name(const char *s, size_t n)
{
    if (n == 0 || n > HTPASSWD_USER_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static void
id_of(const struct stat *st, struct file_id *id)
{
    memset(id, 0, sizeof(*id));
    id->dev = st->st_dev;
    id->ino = st->st_ino;
    id->size = st->st_size;
    id->mtime_sec = (long long)st->st_mtim.tv_sec;
    id->mtime_nsec = st->st_mtim.tv_nsec;
}

static int
id_eq(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec && a->err == b->err;
}

static int
read_file(const char *path, char **out, struct file_id *id, struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        id->err = errno;
        return err_sys(e, ERR_IO, errno, "htpasswd file '%s'", path);
    }
    struct stat st;
    char *buf = NULL;
    int rc = -1;
    if (fstat(fd, &st) < 0) {
        id->err = errno;
        err_sys(e, ERR_IO, errno, "htpasswd file '%s'", path);
        goto out;
    }
    id_of(&st, id);
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)FILE_MAX) {
        err_set(e, ERR_CONFIG, 0, "htpasswd file '%s': not a regular file or over %u MiB", path,
                FILE_MAX >> 20);
        goto out;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    buf = malloc(cap);
    if (!buf) {
        err_set(e, ERR_NOMEM, ENOMEM, "htpasswd file '%s': out of memory", path);
        goto out;
    }
    /* the size may change under us: read to EOF, but never past the cap */
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err_sys(e, ERR_IO, errno, "reading '%s'", path);
            goto out;
        }
        if (r == 0 || len + (size_t)r == cap - 1) {
            len += (size_t)r;
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    *out = buf;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    close(fd);
    return rc;
}

/* parse text (taken over) into a new content; prev (may be NULL) lends the
 * generations of unchanged users */
static struct content *
parse(const char *path, char *text, const struct content *prev, struct err *e)
{
    struct content *c = calloc(1, sizeof(*c));
    if (!c) {
        free(text);
        err_set(e, ERR_NOMEM, ENOMEM, "htpasswd: out of memory");
        return NULL;
    }
    c->text = text;
    size_t cap = 0;
    int lineno = 0;
    char *p = text;
    while (*p) {
        char *nl = strchr(p, '\n');
        char *next = nl ? nl + 1 : p + strlen(p);
        char *end = nl ? nl : next;
        lineno++;
        while (end > p && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *end = '\0';
        char *s = p;
        p = next;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s || *s == '#')
            continue;
        char *colon = strchr(s, ':');
        if (!colon) {
            err_set(e, ERR_CONFIG, 0, "%s:%d: malformed line (expected user:hash)", path, lineno);
            goto fail;
        }
        *colon = '\0';
        const char *hash = colon + 1;
        size_t hlen = strlen(hash);
        if (!valid_name(s, (size_t)(colon - s))) {
            err_set(e, ERR_CONFIG, 0,
                    "%s:%d: invalid user name (1 to %d characters, no control characters)", path,
                    lineno, HTPASSWD_USER_MAX);
            goto fail;
        }
        if (bcrypt_cost(hash, hlen) < 0) {
            err_set(e, ERR_CONFIG, 0,
                    "%s:%d: user '%s': %s hash refused, only bcrypt ($2y$, $2b$, $2a$) is "
                    "accepted (htpasswd -B)",
                    path, lineno, s, scheme_name(hash, hlen));
            goto fail;
        }
        if (c->n == HTPASSWD_MAX_USERS) {
            err_set(e, ERR_CONFIG, 0, "%s:%d: more than %d users", path, lineno,
                    HTPASSWD_MAX_USERS);
            goto fail;
        }
        if (c->n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct user *nu = realloc(c->users, ncap * sizeof(*nu));
            if (!nu) {
                err_set(e, ERR_NOMEM, ENOMEM, "htpasswd: out of memory");
                goto fail;
            }
            c->users = nu;
            cap = ncap;
        }
        struct user *u = &c->users[c->n++];
        u->name = s;
        memcpy(u->hash, hash, BCRYPT_LEN + 1);
        u->line = lineno;
        u->gen = 0;
    }
    if (c->n)
        qsort(c->users, c->n, sizeof(*c->users), user_cmp);
    for (size_t i = 1; i < c->n; i++) {
        if (strcmp(c->users[i - 1].name, c->users[i].name) == 0) {
            err_set(e, ERR_CONFIG, 0, "%s:%d: user '%s': duplicate (first on line %d)", path,
                    c->users[i].line, c->users[i].name, c->users[i - 1].line);
            goto fail;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        struct user *u = &c->users[i];
        const struct user *old = prev ? content_find(prev, u->name) : NULL;
        u->gen = old && strcmp(old->hash, u->hash) == 0 ? old->gen : next_gen();
    }
    /* the dummy costs what the first user's check costs (typical for the
     * file); its hash part never matches (it is not a real bcrypt output) */
    int cost = DEFAULT_COST;
    if (c->n) {
        const struct user *first = &c->users[0];
        for (size_t i = 1; i < c->n; i++)
            if (c->users[i].line < first->line)
                first = &c->users[i];
        cost = bcrypt_cost(first->hash, BCRYPT_LEN);
    }
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn("$2y$", (unsigned long)cost, NULL, 0, setting, sizeof(setting)) ||
        strlen(setting) != 29) {
        err_sys(e, ERR_INTERNAL, errno, "htpasswd: cannot make a bcrypt salt");
        goto fail;
    }
    snprintf(c->dummy, sizeof(c->dummy), "%s%s", setting, "...............................");
    return c;
fail:
    content_free(c);
    return NULL;
}

static struct content *
load(const char *path, const struct content *prev, struct file_id *id, struct err *e)
{
    char *text = NULL;
    if (read_file(path, &text, id, e) < 0)
        return NULL;
    return parse(path, text, prev, e);
}

struct htpasswd *
htpasswd_open(const char *path, struct err *e)
{
    struct htpasswd *h = calloc(1, sizeof(*h));
    if (!h || !(h->path = strdup(path))) {
        free(h);
        err_set(e, ERR_NOMEM, ENOMEM, "htpasswd: out of memory");
        return NULL;
    }
    h->cur = load(path, NULL, &h->seen, e);
    unsigned char key[SHA256_CBLOCK], pad[SHA256_CBLOCK];
    if (h->cur && RAND_bytes(key, sizeof(key)) != 1) {
        err_set(e, ERR_INTERNAL, 0, "htpasswd: no random bytes for the cache key");
        content_free(h->cur);
        h->cur = NULL;
    }
    if (!h->cur) {
        free(h->path);
        free(h);
        return NULL;
    }
    /* RFC 2104 with a full-block key: inner = H(K^ipad || m), outer =
     * H(K^opad || inner) */
    for (size_t i = 0; i < sizeof(key); i++)
        pad[i] = key[i] ^ 0x36;
    SHA256_Init(&h->mac_inner);
    SHA256_Update(&h->mac_inner, pad, sizeof(pad));
    for (size_t i = 0; i < sizeof(key); i++)
        pad[i] = key[i] ^ 0x5c;
    SHA256_Init(&h->mac_outer);
    SHA256_Update(&h->mac_outer, pad, sizeof(pad));
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(pad, sizeof(pad));
    pthread_rwlock_init(&h->lock, NULL);
    pthread_mutex_init(&h->refresh_lock, NULL);
    pthread_mutex_init(&h->cache_lock, NULL);
    return h;
}

void
htpasswd_free(struct htpasswd *h)
{
    if (!h)
        return;
    content_free(h->cur);
    pthread_rwlock_destroy(&h->lock);
    pthread_mutex_destroy(&h->refresh_lock);
    pthread_mutex_destroy(&h->cache_lock);
    free(h->path);
    OPENSSL_cleanse(&h->mac_inner, sizeof(h->mac_inner));
    OPENSSL_cleanse(&h->mac_outer, sizeof(h->mac_outer));
    OPENSSL_cleanse(h->cache, sizeof(h->cache));
    free(h);
}

int
htpasswd_refresh(struct htpasswd *h, long long now, struct err *e)
{
    /* a reload already running elsewhere does the work */
    if (pthread_mutex_trylock(&h->refresh_lock) != 0)
        return 0;
    int rc = 0;
    if (h->stat_once && now >= h->last_stat && now - h->last_stat < 1)
        goto out;
    h->stat_once = 1;
    h->last_stat = now;
    struct stat st;
    struct file_id id;
    if (stat(h->path, &st) < 0) {
        memset(&id, 0, sizeof(id));
        id.err = errno;
    } else {
        id_of(&st, &id);
    }
    if (id_eq(&id, &h->seen))
        goto out;
    /* a broken or missing file is reported once, not at every stat */
    h->seen = id;
    if (id.err) {
        rc = err_sys(e, ERR_IO, id.err, "htpasswd file '%s' (keeping the users loaded before)",
                     h->path);
        goto out;
    }
    /* only this thread replaces cur, so reading it unlocked here is safe */
    struct content *c = load(h->path, h->cur, &h->seen, e);
    if (!c) {
        rc = -1;
        goto out;
    }
    pthread_rwlock_wrlock(&h->lock);
    struct content *old = h->cur;
    h->cur = c;
    pthread_rwlock_unlock(&h->lock);
    content_free(old);
    rc = 1;
out:
    pthread_mutex_unlock(&h->refresh_lock);
    return rc;
}

/* the user's generation and (when hash is not NULL) a copy of its hash; 0 when
 * unknown (the dummy is copied then) */
static uint64_t
lookup(struct htpasswd *h, const char *user, char *hash)
{
    uint64_t gen = 0;
    pthread_rwlock_rdlock(&h->lock);
    const struct user *u = content_find(h->cur, user);
    if (u)
        gen = u->gen;
    if (hash)
        memcpy(hash, u ? u->hash : h->cur->dummy, BCRYPT_LEN + 1);
    pthread_rwlock_unlock(&h->lock);
    return gen;
}

static void
mac_of(const struct htpasswd *h, const char *user, const char *pass, size_t passlen,
       unsigned char mac[SHA256_DIGEST_LENGTH])
{
    SHA256_CTX c = h->mac_inner;
    unsigned char inner[SHA256_DIGEST_LENGTH];
    SHA256_Update(&c, user, strlen(user) + 1); /* user NUL password */
    SHA256_Update(&c, pass, passlen);
    SHA256_Final(inner, &c);
    c = h->mac_outer;
    SHA256_Update(&c, inner, sizeof(inner));
    SHA256_Final(mac, &c);
    OPENSSL_cleanse(inner, sizeof(inner));
    OPENSSL_cleanse(&c, sizeof(c));
}

static struct cache_entry *
cache_set(struct htpasswd *h, const unsigned char *mac)
{
    uint32_t idx;
    memcpy(&idx, mac, sizeof(idx));
    return h->cache[idx % CACHE_SETS];
}

int
htpasswd_cached(struct htpasswd *h, const char *user, const char *pass, size_t passlen,
                long long now)
{
    if (!h || !user || !pass || passlen > PASS_MAX)
        return 0;
    uint64_t gen = lookup(h, user, NULL);
    if (!gen)
        return 0;
    unsigned char mac[SHA256_DIGEST_LENGTH];
    mac_of(h, user, pass, passlen, mac);
    int hit = 0;
    pthread_mutex_lock(&h->cache_lock);
    struct cache_entry *set = cache_set(h, mac);
    for (int i = 0; i < CACHE_WAYS; i++) {
        struct cache_entry *ce = &set[i];
        if (ce->gen && CRYPTO_memcmp(ce->mac, mac, sizeof(mac)) == 0) {
            if (ce->gen == gen && now - ce->at < HTPASSWD_CACHE_SEC)
                hit = 1;
            else
                memset(ce, 0, sizeof(*ce)); /* stale: its line changed or it expired */
            break;
        }
    }
    pthread_mutex_unlock(&h->cache_lock);
    return hit;
}

static void
cache_put(struct htpasswd *h, const unsigned char *mac, uint64_t gen, long long now)
{
    pthread_mutex_lock(&h->cache_lock);
    struct cache_entry *set = cache_set(h, mac), *victim = &set[0];
    for (int i = 0; i < CACHE_WAYS; i++) {
        struct cache_entry *ce = &set[i];
        if (ce->gen && CRYPTO_memcmp(ce->mac, mac, SHA256_DIGEST_LENGTH) == 0) {
            victim = ce;
            break;
        }
        if (!ce->gen)
            victim = ce;
        else if (victim->gen && ce->at < victim->at)
            victim = ce;
    }
    memcpy(victim->mac, mac, SHA256_DIGEST_LENGTH);
    victim->gen = gen;
    victim->at = now;
    pthread_mutex_unlock(&h->cache_lock);
}

int
htpasswd_verify(struct htpasswd *h, const char *user, const char *pass, size_t passlen,
                long long now)
{
    if (!h || !user || !pass)
        return 0;
    char hash[BCRYPT_LEN + 1];
    uint64_t gen = lookup(h, user, hash);
    /* bcrypt reads a C string: a password holding a NUL would be checked
     * truncated, so it never matches */
    int usable = passlen <= PASS_MAX && !memchr(pass, '\0', passlen);
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    char *pw = malloc(PASS_MAX + 1);
    int ok = 0;
    if (!cd || !pw)
        goto out;
    size_t n = usable ? passlen : 0;
    memcpy(pw, pass, n);
    pw[n] = '\0';
    /* an unknown user (or an unusable password) costs the same bcrypt */
    const char *out = crypt_rn(pw, hash, cd, (int)sizeof(*cd));
    if (out && strlen(out) == BCRYPT_LEN && CRYPTO_memcmp(out, hash, BCRYPT_LEN) == 0 && gen &&
        usable)
        ok = 1;
    if (ok) {
        unsigned char mac[SHA256_DIGEST_LENGTH];
        mac_of(h, user, pass, passlen, mac);
        /* generations are compared at lookup: if the line changed while
         * bcrypt ran, the entry already carries the old generation */
        cache_put(h, mac, gen, now);
    }
out:
    if (cd)
        OPENSSL_cleanse(cd, sizeof(*cd));
    if (pw)
        OPENSSL_cleanse(pw, PASS_MAX + 1);
    free(cd);
    free(pw);
    return ok;
}

int
htpasswd_has_user(struct htpasswd *h, const char *user)
{
    if (!h || !user)
        return 0;
    return lookup(h, user, NULL) != 0;
}
