/* rb_util.h - regbench argument parsing helpers. */
#ifndef REGBENCH_RB_UTIL_H
#define REGBENCH_RB_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct err;

/* rb_parse_size - "4096", "4K", "4KiB", "64M", "1G" (binary units) -> bytes.
 * Returns 0, or -1 (e filled) for an empty, malformed, zero or overflowing
 * value. */
int rb_parse_size(const char *s, uint64_t *out, struct err *e);

/* rb_parse_url - split "http://HOST[:PORT][/]" into base (without the trailing
 * slash), host (without IPv6 brackets) and port. A path, user info, query or
 * another scheme is refused. Returns 0 or -1 (e filled). */
int rb_parse_url(const char *url, char *base, size_t basecap, char *host, size_t hostcap,
                 char *port, size_t portcap, struct err *e);

/* rb_host_is_loopback - 1 for 127.0.0.0/8, "localhost" and ::1. */
int rb_host_is_loopback(const char *host);

#endif
