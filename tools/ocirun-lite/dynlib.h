/* dynlib.h - libcurl, libarchive and libcrypto, loaded with dlopen on first use.
 *
 * Why: `ocirun-lite run` of a cached image needs neither the registry client
 * nor the tar reader, yet linking libcurl and libarchive makes every exec map
 * and relocate ~40 shared objects (krb5, ldap, libxml2, ICU, libstdc++...):
 * about 14 ms per start on the build VM, more than the whole container start.
 * The few files that use these libraries include this header after the
 * libraries' own headers; it turns each call into a call through a pointer
 * that dynlib_curl()/dynlib_archive() fill. Nothing references the libraries'
 * symbols at link time, so `-Wl,--as-needed` drops them from the binary.
 *
 * libcrypto (OpenSSL's SHA-256, for blobs and layers) goes the same way: its
 * ~17,000 relocations cost 3-5 ms per exec here, and a warm run hashes only a
 * few hundred bytes, which cstore_sha256 does in plain C.
 *
 * Call dynlib_curl() (dynlib_archive(), dynlib_crypto()) before the first
 * curl_* (archive_*, EVP_*) call; all are thread-safe and cheap after the
 * first time. */
#ifndef OCIRUN_DYNLIB_H
#define OCIRUN_DYNLIB_H

#ifndef CURL_DISABLE_TYPECHECK
#define CURL_DISABLE_TYPECHECK /* curl_easy_setopt must stay a plain name */
#endif
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <openssl/evp.h>

struct err;

#define DYNLIB_CURL_FUNCS(X)                                                                  \
    X(curl_global_init)                                                                       \
    X(curl_easy_init)                                                                         \
    X(curl_easy_cleanup)                                                                      \
    X(curl_easy_escape)                                                                       \
    X(curl_easy_getinfo)                                                                      \
    X(curl_easy_perform)                                                                      \
    X(curl_easy_setopt)                                                                       \
    X(curl_easy_strerror)                                                                     \
    X(curl_free)                                                                              \
    X(curl_multi_add_handle)                                                                  \
    X(curl_multi_cleanup)                                                                     \
    X(curl_multi_info_read)                                                                   \
    X(curl_multi_init)                                                                        \
    X(curl_multi_perform)                                                                     \
    X(curl_multi_poll)                                                                        \
    X(curl_multi_remove_handle)                                                               \
    X(curl_slist_append)                                                                      \
    X(curl_slist_free_all)

#define DYNLIB_ARCHIVE_FUNCS(X)                                                               \
    X(archive_entry_atime)                                                                    \
    X(archive_entry_atime_is_set)                                                             \
    X(archive_entry_atime_nsec)                                                               \
    X(archive_entry_filetype)                                                                 \
    X(archive_entry_gid)                                                                      \
    X(archive_entry_hardlink)                                                                 \
    X(archive_entry_mtime)                                                                    \
    X(archive_entry_mtime_nsec)                                                               \
    X(archive_entry_pathname)                                                                 \
    X(archive_entry_perm)                                                                     \
    X(archive_entry_rdevmajor)                                                                \
    X(archive_entry_rdevminor)                                                                \
    X(archive_entry_size)                                                                     \
    X(archive_entry_size_is_set)                                                              \
    X(archive_entry_symlink)                                                                  \
    X(archive_entry_uid)                                                                      \
    X(archive_entry_xattr_count)                                                              \
    X(archive_entry_xattr_next)                                                               \
    X(archive_entry_xattr_reset)                                                              \
    X(archive_error_string)                                                                   \
    X(archive_read_data)                                                                      \
    X(archive_read_data_block)                                                                \
    X(archive_read_free)                                                                      \
    X(archive_read_new)                                                                       \
    X(archive_read_next_header)                                                               \
    X(archive_read_open)                                                                      \
    X(archive_read_open_filename)                                                             \
    X(archive_read_support_filter_all)                                                        \
    X(archive_read_support_format_raw)                                                        \
    X(archive_read_support_format_tar)                                                        \
    X(archive_set_error)

#define DYNLIB_CRYPTO_FUNCS(X)                                                                \
    X(EVP_Digest)                                                                             \
    X(EVP_DigestFinal_ex)                                                                     \
    X(EVP_DigestInit_ex)                                                                      \
    X(EVP_DigestUpdate)                                                                       \
    X(EVP_MD_CTX_free)                                                                        \
    X(EVP_MD_CTX_new)                                                                         \
    X(EVP_sha256)

#define DYNLIB_DECLARE(f) extern __typeof__(f) *dynlib_##f;
DYNLIB_CURL_FUNCS(DYNLIB_DECLARE)
DYNLIB_ARCHIVE_FUNCS(DYNLIB_DECLARE)
DYNLIB_CRYPTO_FUNCS(DYNLIB_DECLARE)
#undef DYNLIB_DECLARE

/* dynlib_curl - load libcurl (once per process) and run curl_global_init.
 * Returns 0, or -1 with ERR_INTERNAL when the library or one of its functions
 * cannot be found. */
int dynlib_curl(struct err *e);

/* dynlib_archive - load libarchive (once per process). Returns 0, or -1 with
 * ERR_INTERNAL when the library or one of its functions cannot be found. */
int dynlib_archive(struct err *e);

/* dynlib_crypto - load libcrypto (once per process). Returns 0, or -1 with
 * ERR_INTERNAL when the library or one of its functions cannot be found. */
int dynlib_crypto(struct err *e);

#ifndef DYNLIB_NO_REDIRECT
#define curl_global_init (*dynlib_curl_global_init)
#define curl_easy_init (*dynlib_curl_easy_init)
#define curl_easy_cleanup (*dynlib_curl_easy_cleanup)
#define curl_easy_escape (*dynlib_curl_easy_escape)
#undef curl_easy_getinfo /* curl.h defines both as macros of themselves */
#define curl_easy_getinfo (*dynlib_curl_easy_getinfo)
#define curl_easy_perform (*dynlib_curl_easy_perform)
#undef curl_easy_setopt
#define curl_easy_setopt (*dynlib_curl_easy_setopt)
#define curl_easy_strerror (*dynlib_curl_easy_strerror)
#define curl_free (*dynlib_curl_free)
#define curl_multi_add_handle (*dynlib_curl_multi_add_handle)
#define curl_multi_cleanup (*dynlib_curl_multi_cleanup)
#define curl_multi_info_read (*dynlib_curl_multi_info_read)
#define curl_multi_init (*dynlib_curl_multi_init)
#define curl_multi_perform (*dynlib_curl_multi_perform)
#define curl_multi_poll (*dynlib_curl_multi_poll)
#define curl_multi_remove_handle (*dynlib_curl_multi_remove_handle)
#define curl_slist_append (*dynlib_curl_slist_append)
#define curl_slist_free_all (*dynlib_curl_slist_free_all)

#define archive_entry_atime (*dynlib_archive_entry_atime)
#define archive_entry_atime_is_set (*dynlib_archive_entry_atime_is_set)
#define archive_entry_atime_nsec (*dynlib_archive_entry_atime_nsec)
#define archive_entry_filetype (*dynlib_archive_entry_filetype)
#define archive_entry_gid (*dynlib_archive_entry_gid)
#define archive_entry_hardlink (*dynlib_archive_entry_hardlink)
#define archive_entry_mtime (*dynlib_archive_entry_mtime)
#define archive_entry_mtime_nsec (*dynlib_archive_entry_mtime_nsec)
#define archive_entry_pathname (*dynlib_archive_entry_pathname)
#define archive_entry_perm (*dynlib_archive_entry_perm)
#define archive_entry_rdevmajor (*dynlib_archive_entry_rdevmajor)
#define archive_entry_rdevminor (*dynlib_archive_entry_rdevminor)
#define archive_entry_size (*dynlib_archive_entry_size)
#define archive_entry_size_is_set (*dynlib_archive_entry_size_is_set)
#define archive_entry_symlink (*dynlib_archive_entry_symlink)
#define archive_entry_uid (*dynlib_archive_entry_uid)
#define archive_entry_xattr_count (*dynlib_archive_entry_xattr_count)
#define archive_entry_xattr_next (*dynlib_archive_entry_xattr_next)
#define archive_entry_xattr_reset (*dynlib_archive_entry_xattr_reset)
#define archive_error_string (*dynlib_archive_error_string)
#define archive_read_data (*dynlib_archive_read_data)
#define archive_read_data_block (*dynlib_archive_read_data_block)
#define archive_read_free (*dynlib_archive_read_free)
#define archive_read_new (*dynlib_archive_read_new)
#define archive_read_next_header (*dynlib_archive_read_next_header)
#define archive_read_open (*dynlib_archive_read_open)
#define archive_read_open_filename (*dynlib_archive_read_open_filename)
#define archive_read_support_filter_all (*dynlib_archive_read_support_filter_all)
#define archive_read_support_format_raw (*dynlib_archive_read_support_format_raw)
#define archive_read_support_format_tar (*dynlib_archive_read_support_format_tar)
#define archive_set_error (*dynlib_archive_set_error)

#define EVP_Digest (*dynlib_EVP_Digest)
#define EVP_DigestFinal_ex (*dynlib_EVP_DigestFinal_ex)
#define EVP_DigestInit_ex (*dynlib_EVP_DigestInit_ex)
#define EVP_DigestUpdate (*dynlib_EVP_DigestUpdate)
#define EVP_MD_CTX_free (*dynlib_EVP_MD_CTX_free)
#define EVP_MD_CTX_new (*dynlib_EVP_MD_CTX_new)
#define EVP_sha256 (*dynlib_EVP_sha256)
#endif

#endif
