#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/banned.h"

enum log_level log_current_level = LOG_INFO;
static int log_json;
static int log_fd = 2;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
log_setup(enum log_level level, int json, int fd)
{
    log_current_level = level;
    log_json = json;
    log_fd = fd;
}

void
log_reconfigure(enum log_level level, int json)
{
    __atomic_store_n(&log_json, json, __ATOMIC_RELAXED);
    __atomic_store_n(&log_current_level, level, __ATOMIC_RELAXED);
}

int
log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

/* append s to buf as the body of a JSON string */
static size_t
json_escape(char *buf, size_t cap, size_t at, const char *s)
{
    for (; *s && at + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[at++] = '\\';
            buf[at++] = (char)c;
        } else if (c < 0x20) {
            at += (size_t)snprintf(buf + at, cap - at, "\\u%04x", c);
        } else {
            buf[at++] = (char)c;
        }
    }
    return at;
}

void
log_write(enum log_level level, const char *module, const char *reqid, const char *fmt, ...)
{
    char msg[1024], line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03dZ", (int)(tv.tv_usec / 1000));

    size_t n;
    if (__atomic_load_n(&log_json, __ATOMIC_RELAXED)) {
        n = (size_t)snprintf(line, sizeof(line),
                             "{\"time\":\"%s\",\"level\":\"%s\",\"module\":\"%s\",", ts,
                             level_names[level], module ? module : "-");
        if (reqid)
            n += (size_t)snprintf(line + n, sizeof(line) - n, "\"req\":\"%s\",", reqid);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\"msg\":\"");
        n = json_escape(line, sizeof(line), n, msg);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\"}\n");
    } else {
        n = (size_t)snprintf(line, sizeof(line), "%s %-5s %s%s%s %s\n", ts, level_names[level],
                             module ? module : "-", reqid ? " req=" : "", reqid ? reqid : "",
                             msg);
    }
    if (n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(log_fd, line, n);
    (void)w;
}
