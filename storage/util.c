/* util.c - what the storage files share that is neither metadata nor bytes:
 * the fault injection hook of the tests and upload ids. */
#include "storage/storage_internal.h"

#include <errno.h>
#include <sys/random.h>

#include "common/banned.h"

void
storage_fault_inject(struct storage *st, unsigned ops, int err_no, int count)
{
    pthread_mutex_lock(&st->fault.mu);
    st->fault.ops = ops;
    st->fault.err_no = err_no;
    st->fault.count = count > 0 ? count : 0;
    __atomic_store_n(&st->fault.armed, st->fault.count > 0 && ops != 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&st->fault.mu);
}

int
fault_hit(struct fault *f, unsigned op)
{
    if (!f || !__atomic_load_n(&f->armed, __ATOMIC_ACQUIRE))
        return 0;
    int hit = 0;
    pthread_mutex_lock(&f->mu);
    if (f->count > 0 && (f->ops & op)) {
        f->count--;
        hit = 1;
        errno = f->err_no ? f->err_no : EIO;
        if (f->count == 0)
            __atomic_store_n(&f->armed, 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&f->mu);
    return hit;
}

void
storage_fsync_hook(struct storage *st, void (*fn)(void *arg), void *arg)
{
    __atomic_store_n(&st->fault.fsync_hook_arg, arg, __ATOMIC_RELEASE);
    __atomic_store_n(&st->fault.fsync_hook, fn, __ATOMIC_RELEASE);
}

void
fault_fsync_hook(struct fault *f)
{
    void (*hook)(void *) = f ? __atomic_load_n(&f->fsync_hook, __ATOMIC_ACQUIRE) : NULL;
    if (hook)
        hook(__atomic_load_n(&f->fsync_hook_arg, __ATOMIC_ACQUIRE));
}

int
uuid_generate(char out[UPLOAD_ID_LEN + 1], struct err *e)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t r = getrandom(b + got, sizeof(b) - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return err_sys(e, ERR_IO, errno, "getrandom");
        }
        got += (size_t)r;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hexd[] = "0123456789abcdef";
    size_t j = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hexd[b[i] >> 4];
        out[j++] = hexd[b[i] & 15];
    }
    out[j] = '\0';
    return 0;
}

int
uuid_valid(const char *s)
{
    if (!s)
        return 0;
    for (int i = 0; i < UPLOAD_ID_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return s[UPLOAD_ID_LEN] == '\0';
}
