/* log.h - one line per event: time, level, module, request id, message, key=value.
 *
 * The level check happens in the macro, before any argument is evaluated. The
 * level and format are process-wide (set once at start-up, before threads run);
 * writes are one write(2) per line, so lines of different threads never mix.
 * Never pass Authorization headers, tokens or passwords. */
#ifndef OCIREG_LOG_H
#define OCIREG_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern enum log_level log_current_level;

/* log_setup - level and format (json != 0: one JSON object per line) and the fd
 * written to (2 = stderr). Call before starting threads. */
void log_setup(enum log_level level, int json, int fd);

/* log_reconfigure - a new level and format while threads run (SIGHUP): each
 * is stored atomically, a line being written uses one or the other. */
void log_reconfigure(enum log_level level, int json);

/* log_level_parse - "error|warn|info|debug" -> level; -1 if unknown. */
int log_level_parse(const char *s);

/* log_write - prefer the macros. reqid may be NULL. fmt is the message; the
 * message may contain key=value pairs after it, they are written as is (text)
 * or as the "msg" string (json). */
void log_write(enum log_level level, const char *module, const char *reqid, const char *fmt,
               ...) __attribute__((format(printf, 4, 5)));

#define LOG_AT(lvl, mod, reqid, ...)                                                             \
    do {                                                                                         \
        if ((lvl) <= log_current_level)                                                          \
            log_write((lvl), (mod), (reqid), __VA_ARGS__);                                       \
    } while (0)
#define log_error(mod, reqid, ...) LOG_AT(LOG_ERROR, mod, reqid, __VA_ARGS__)
#define log_warn(mod, reqid, ...) LOG_AT(LOG_WARN, mod, reqid, __VA_ARGS__)
#define log_info(mod, reqid, ...) LOG_AT(LOG_INFO, mod, reqid, __VA_ARGS__)
#define log_debug(mod, reqid, ...) LOG_AT(LOG_DEBUG, mod, reqid, __VA_ARGS__)

#endif
