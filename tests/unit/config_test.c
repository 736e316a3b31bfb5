/* config_test.c - registry.conf parsing, environment overrides, errors. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"

#include "common/banned.h"

static char path[64];

static void
clear_env(void)
{
    static const char *const vars[] = {"OCIREG_SERVER_LISTEN",
                                       "OCIREG_SERVER_WORKERS",
                                       "OCIREG_SERVER_MAX_CONNECTIONS",
                                       "OCIREG_SERVER_HEADER_MAX",
                                       "OCIREG_SERVER_HEADER_TIMEOUT",
                                       "OCIREG_SERVER_IDLE_TIMEOUT",
                                       "OCIREG_SERVER_BODY_TIMEOUT",
                                       "OCIREG_SERVER_BODY_BUFFER",
                                       "OCIREG_SERVER_MAX_MANIFEST",
                                       "OCIREG_SERVER_MAX_PAGE",
                                       "OCIREG_STORAGE_ROOT",
                                       "OCIREG_STORAGE_FSYNC",
                                       "OCIREG_STORAGE_UPLOAD_EXPIRY",
                                       "OCIREG_STORAGE_MAX_BLOB_SIZE",
                                       "OCIREG_STORAGE_MAX_UPLOADS",
                                       "OCIREG_STORAGE_MAX_UPLOADS_PER_REPO",
                                       "OCIREG_STORAGE_MAX_MANIFEST_REFS",
                                       "OCIREG_STORAGE_IO",
                                       "OCIREG_RETENTION_RULES",
                                       "OCIREG_LOG_LEVEL",
                                       "OCIREG_LOG_FORMAT",
                                       "OCIREG_TLS_CERT",
                                       "OCIREG_TLS_KEY",
                                       "OCIREG_TLS_CLIENT_CA",
                                       "OCIREG_TLS_CLIENT_CERT_REQUIRED",
                                       "OCIREG_TLS_KTLS",
                                       "OCIREG_GC_INTERVAL",
                                       "OCIREG_GC_GRACE",
                                       "OCIREG_GC_DELETE_UNTAGGED"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

static const char *
write_conf(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/config_test.XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    size_t n = strlen(text);
    cr_assert_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static void
cleanup(void)
{
    if (path[0])
        unlink(path);
    path[0] = '\0';
}

TestSuite(config, .init = clear_env, .fini = cleanup);

Test(config, defaults_without_file)
{
    struct config c;
    struct err e = {0};
    cr_assert_eq(config_load(&c, NULL, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.server.listen, "127.0.0.1:5000");
    cr_assert_str_eq(c.storage.root, "./data");
    cr_assert_eq(c.server.workers, 0);
    cr_assert_eq(c.server.blocking_threads, 0);
    cr_assert_eq(c.server.upload_threads, 0);
    cr_assert_eq(c.server.upload_nice, 10);
    cr_assert_eq(c.server.max_connections, 10000);
    cr_assert_eq(c.server.header_max, 16384);
    cr_assert_eq(c.server.header_timeout_ms, 10000);
    cr_assert_eq(c.server.idle_timeout_ms, 60000);
    cr_assert_eq(c.server.body_timeout_ms, 60000);
    cr_assert_eq(c.server.body_buffer, 1048576);
    cr_assert_eq(c.server.max_manifest, 4194304);
    cr_assert_eq(c.server.max_page, 10000);
    cr_assert_eq(c.storage.fsync, 1);
    cr_assert_eq(c.storage.upload_expiry_sec, 86400);
    cr_assert_eq(c.storage.max_blob_size, 0);
    cr_assert_eq(c.storage.max_uploads, 10000);
    cr_assert_eq(c.storage.max_uploads_per_repo, 1000);
    cr_assert_eq(c.storage.max_manifest_refs, 10000);
    cr_assert_eq(c.storage.io, CONFIG_IO_AUTO);
    cr_assert_eq(c.log.level, LOG_INFO);
    cr_assert_eq(c.log.json, 0);
}

Test(config, parses_every_key_with_units)
{
    const char *p = write_conf("# comment\n"
                               "; another\n"
                               "\n"
                               "[server]\n"
                               "listen = 0.0.0.0:8080   # trailing comment\n"
                               "workers=3\n"
                               "  max_connections = 77\n"
                               "header_max = 8KiB\n"
                               "header_timeout = 500ms\n"
                               "idle_timeout = 2m\n"
                               "body_timeout = 7\n"
                               "body_buffer = 2MiB\n"
                               "max_manifest = 8M\n"
                               "max_page = 50\n"
                               "blocking_threads = 6\n"
                               "upload_threads = -1\n"
                               "upload_nice = 19\n"
                               "[Storage]\n"
                               "root = \"/srv/reg #1\"\n"
                               "fsync = off\n"
                               "upload_expiry = 1h\n"
                               "max_blob_size = 2GiB\n"
                               "max_uploads = 50\n"
                               "max_uploads_per_repo = 5\n"
                               "max_manifest_refs = 300\n"
                               "io = posix\n"
                               "[log]\n"
                               "level = debug\n"
                               "format = json\n");
    struct config c;
    struct err e = {0};
    cr_assert_eq(config_load(&c, p, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.server.listen, "0.0.0.0:8080");
    cr_assert_eq(c.server.workers, 3);
    cr_assert_eq(c.server.blocking_threads, 6);
    cr_assert_eq(c.server.upload_threads, -1);
    cr_assert_eq(c.server.upload_nice, 19);
    cr_assert_eq(c.server.max_connections, 77);
    cr_assert_eq(c.server.header_max, 8192);
    cr_assert_eq(c.server.header_timeout_ms, 500);
    cr_assert_eq(c.server.idle_timeout_ms, 120000);
    cr_assert_eq(c.server.body_timeout_ms, 7000);
    cr_assert_eq(c.server.body_buffer, 2097152);
    cr_assert_eq(c.server.max_manifest, 8388608);
    cr_assert_eq(c.server.max_page, 50);
    cr_assert_str_eq(c.storage.root, "/srv/reg #1");
    cr_assert_eq(c.storage.fsync, 0);
    cr_assert_eq(c.storage.upload_expiry_sec, 3600);
    cr_assert_eq(c.storage.max_blob_size, 2147483648ULL);
    cr_assert_eq(c.storage.max_uploads, 50);
    cr_assert_eq(c.storage.max_uploads_per_repo, 5);
    cr_assert_eq(c.storage.max_manifest_refs, 300);
    cr_assert_eq(c.storage.io, CONFIG_IO_POSIX);
    cr_assert_eq(c.log.level, LOG_DEBUG);
    cr_assert_eq(c.log.json, 1);
}

Test(config, environment_overrides_file)
{
    const char *p = write_conf("[server]\nlisten = 10.0.0.1:1\nworkers = 2\n"
                               "[storage]\nroot = /from/file\n");
    setenv("OCIREG_SERVER_LISTEN", "127.0.0.1:0", 1);
    setenv("OCIREG_STORAGE_ROOT", "/from/env", 1);
    setenv("OCIREG_SERVER_HEADER_TIMEOUT", "3s", 1);
    setenv("OCIREG_STORAGE_FSYNC", "false", 1);
    setenv("OCIREG_UNRELATED_THING", "x", 1); /* not a key: ignored */
    struct config c;
    struct err e = {0};
    cr_assert_eq(config_load(&c, p, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.server.listen, "127.0.0.1:0");
    cr_assert_str_eq(c.storage.root, "/from/env");
    cr_assert_eq(c.server.workers, 2);
    cr_assert_eq(c.server.header_timeout_ms, 3000);
    cr_assert_eq(c.storage.fsync, 0);

    /* the new [storage] keys by their environment names */
    setenv("OCIREG_STORAGE_IO", "uring", 1);
    setenv("OCIREG_STORAGE_MAX_BLOB_SIZE", "1MiB", 1);
    setenv("OCIREG_STORAGE_MAX_UPLOADS", "7", 1);
    setenv("OCIREG_STORAGE_MAX_UPLOADS_PER_REPO", "3", 1);
    setenv("OCIREG_STORAGE_MAX_MANIFEST_REFS", "9", 1);
    cr_assert_eq(config_load(&c, p, &e), 0, "%s", e.msg);
    cr_assert_eq(c.storage.io, CONFIG_IO_URING);
    cr_assert_eq(c.storage.max_blob_size, 1048576);
    cr_assert_eq(c.storage.max_uploads, 7);
    cr_assert_eq(c.storage.max_uploads_per_repo, 3);
    cr_assert_eq(c.storage.max_manifest_refs, 9);

    /* and without a file */
    cr_assert_eq(config_load(&c, NULL, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.storage.root, "/from/env");
}

Test(config, bad_environment_value_names_the_variable)
{
    setenv("OCIREG_SERVER_WORKERS", "many", 1);
    struct config c;
    struct err e = {0};
    cr_assert_eq(config_load(&c, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_CONFIG);
    cr_assert_not_null(strstr(e.msg, "OCIREG_SERVER_WORKERS"), "%s", e.msg);
}

Test(config, unknown_key_is_an_error_with_file_and_line)
{
    const char *p = write_conf("[server]\nlisten = 127.0.0.1:1\nlistne = x\n");
    struct config c;
    struct err e = {0};
    cr_assert_eq(config_load(&c, p, &e), -1);
    cr_assert_eq(e.code, ERR_CONFIG);
    char want[128];
    snprintf(want, sizeof(want), "%s:3: unknown key 'listne' in [server]", p);
    cr_assert_str_eq(e.msg, want);
}

Test(config, unknown_section_is_an_error_with_file_and_line)
{
    const char *p = write_conf("[server]\n\n[sevrer]\nlisten = x:1\n");
    struct config c;
    struct err e = {0};
    cr_assert_eq(config_load(&c, p, &e), -1);
    char want[128];
    snprintf(want, sizeof(want), "%s:3: unknown section [sevrer]", p);
    cr_assert_str_eq(e.msg, want);
}

Test(config, malformed_lines_and_values_are_errors)
{
    static const char *const bad[] = {
        "listen = 1.2.3.4:5\n",                /* outside a section */
        "[server]\njust words\n",              /* no '=' */
        "[server\n",                           /* broken header */
        "[server]\nworkers = -1\n",            /* negative */
        "[server]\nworkers = 3x\n",            /* junk after number */
        "[server]\nheader_max = 12 parsecs\n", /* unknown unit */
        "[server]\nheader_timeout = soon\n",   /* not a duration */
        "[storage]\nfsync = maybe\n",          /* not a boolean */
        "[log]\nlevel = loud\n",               /* unknown level */
        "[log]\nformat = xml\n",               /* unknown format */
        "[storage]\nroot =\n",                 /* empty */
        "[storage]\nroot = \"unterminated\n",
        "[storage]\nio = aio\n",              /* not auto|uring|posix */
        "[storage]\nmax_uploads = 0\n",       /* below the range */
        "[server]\nupload_nice = 20\n",       /* above the range */
        "[server]\nupload_threads = -2\n",    /* below the range */
        "[storage]\nmax_blob_size = lots\n",  /* not a size */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *p = write_conf(bad[i]);
        struct config c;
        struct err e = {0};
        cr_assert_eq(config_load(&c, p, &e), -1, "accepted case %zu: %s", i, bad[i]);
        cr_assert_eq(e.code, ERR_CONFIG, "case %zu", i);
        cr_assert_not_null(strstr(e.msg, p), "case %zu: message without the file: %s", i, e.msg);
        cleanup();
    }
}

Test(config, missing_file_is_an_error)
{
    struct config c;
    struct err e = {0};
    cr_assert_eq(config_load(&c, "/nonexistent/registry.conf", &e), -1);
    cr_assert_not_null(strstr(e.msg, "/nonexistent/registry.conf"), "%s", e.msg);
}

Test(config, shipped_registry_conf_loads_to_defaults)
{
    const char *src = getenv("OCIREG_SRC");
    char p[512];
    snprintf(p, sizeof(p), "%s/registry.conf", src && *src ? src : ".");
    struct config c, d;
    struct err e = {0};
    cr_assert_eq(config_load(&c, p, &e), 0, "%s", e.msg);
    config_defaults(&d);
    cr_assert_eq(memcmp(&c, &d, sizeof(c)), 0);
}

Test(config, value_parsers)
{
    uint64_t u;
    int64_t ms;
    int b;
    cr_assert_eq(config_parse_size("4MiB", &u), 0);
    cr_assert_eq(u, 4u << 20);
    cr_assert_eq(config_parse_size("1 GiB", &u), 0);
    cr_assert_eq(u, 1u << 30);
    cr_assert_eq(config_parse_size("-1", &u), -1);
    cr_assert_eq(config_parse_size("99999999999999999999", &u), -1);
    cr_assert_eq(config_parse_duration_ms("250ms", &ms), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(config_parse_duration_ms("10", &ms), 0);
    cr_assert_eq(ms, 10000);
    cr_assert_eq(config_parse_duration_ms("1d", &ms), -1);
    cr_assert_eq(config_parse_bool("Yes", &b), 0);
    cr_assert_eq(b, 1);
    cr_assert_eq(config_parse_bool("0", &b), 0);
    cr_assert_eq(b, 0);
}

Test(config, tls_keys_parse_with_defaults)
{
    struct config c;
    struct err e = {0};
    cr_assert_eq(config_load(&c, NULL, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.tls.cert, "");
    cr_assert_str_eq(c.tls.client_ca, "");
    cr_assert_eq(c.tls.client_cert_required, 0);
    cr_assert_eq(c.tls.ktls, 1);
    const char *p = write_conf("[tls]\ncert = /a.crt\nkey = /a.key\nclient_ca = /ca.pem\n"
                               "client_cert_required = true\nktls = off\n");
    cr_assert_eq(config_load(&c, p, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.tls.cert, "/a.crt");
    cr_assert_str_eq(c.tls.key, "/a.key");
    cr_assert_str_eq(c.tls.client_ca, "/ca.pem");
    cr_assert_eq(c.tls.client_cert_required, 1);
    cr_assert_eq(c.tls.ktls, 0);
    setenv("OCIREG_TLS_KTLS", "sometimes", 1);
    cr_assert_eq(config_load(&c, p, &e), -1);
    cr_assert(strstr(e.msg, "OCIREG_TLS_KTLS") && strstr(e.msg, "auto|off"), "%s", e.msg);
}

Test(config, tls_cert_without_key_names_both)
{
    struct config c;
    struct err e = {0};
    setenv("OCIREG_TLS_CERT", "/a.crt", 1);
    cr_assert_eq(config_load(&c, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_CONFIG);
    cr_assert(strstr(e.msg, "cert") && strstr(e.msg, "key"), "%s", e.msg);
    unsetenv("OCIREG_TLS_CERT");
    setenv("OCIREG_TLS_KEY", "/a.key", 1);
    cr_assert_eq(config_load(&c, NULL, &e), -1);
    cr_assert(strstr(e.msg, "key unset") == NULL && strstr(e.msg, "cert unset"), "%s", e.msg);
}

Test(config, gc_keys_defaults_file_and_environment)
{
    clear_env();
    struct config c;
    struct err e = {0};
    cr_assert_eq(config_load(&c, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(c.gc.interval_ms, 3600000);
    cr_assert_eq(c.gc.grace_sec, 3600);
    cr_assert_eq(c.gc.delete_untagged, 0);
    const char *p = write_conf("[gc]\ninterval = 0\ngrace = 10m\ndelete_untagged = yes\n");
    cr_assert_eq(config_load(&c, p, &e), 0, "%s", e.msg);
    cr_assert_eq(c.gc.interval_ms, 0);
    cr_assert_eq(c.gc.grace_sec, 600);
    cr_assert_eq(c.gc.delete_untagged, 1);
    setenv("OCIREG_GC_GRACE", "0", 1);
    cr_assert_eq(config_load(&c, p, &e), 0, "%s", e.msg);
    cr_assert_eq(c.gc.grace_sec, 0);
    unsetenv("OCIREG_GC_GRACE");
    unlink(p);
    p = write_conf("[gc]\ngrace = soon\n");
    cr_assert_eq(config_load(&c, p, &e), -1);
    cr_assert_not_null(strstr(e.msg, "gc.grace"), "%s", e.msg);
    unlink(p);
}

Test(config, retention_rules_from_file_and_environment)
{
    struct config c;
    struct err e = {0};
    cr_assert_eq(config_load(&c, NULL, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.retention.rules, "", "no rules by default");
    const char *p = write_conf("[retention]\nrules = /etc/ocireg/retention.rules\n");
    cr_assert_eq(config_load(&c, p, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.retention.rules, "/etc/ocireg/retention.rules");
    setenv("OCIREG_RETENTION_RULES", "/other.rules", 1);
    cr_assert_eq(config_load(&c, p, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.retention.rules, "/other.rules", "the environment wins");
    unsetenv("OCIREG_RETENTION_RULES");
    cleanup();
    p = write_conf("[retention]\nkeep = 3\n");
    cr_assert_eq(config_load(&c, p, &e), -1);
    cr_assert(strstr(e.msg, ":2: unknown key 'keep' in [retention]"), "%s", e.msg);
}
