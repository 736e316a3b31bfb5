/* banned.h - libc calls that are too easy to misuse (git's habit).
 *
 * Include it LAST in a .c file, after every system header: it turns each
 * banned call into a compile error that names the safer replacement. */
#ifndef OCIREG_BANNED_H
#define OCIREG_BANNED_H

#define BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) BANNED(strcpy_use_snprintf_or_memcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat_use_snprintf)
#undef strncpy
#define strncpy(x, y, n) BANNED(strncpy_use_snprintf)
#undef sprintf
#define sprintf(...) BANNED(sprintf_use_snprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf_use_vsnprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok_use_strtok_r)
#undef gmtime
#define gmtime(t) BANNED(gmtime_use_gmtime_r)
#undef localtime
#define localtime(t) BANNED(localtime_use_localtime_r)
#undef asctime
#define asctime(t) BANNED(asctime)
#undef ctime
#define ctime(t) BANNED(ctime)

#endif
