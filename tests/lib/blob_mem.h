/* blob_mem.h - a test blob backend that keeps every byte in memory and
 * reaches them only by read and write: no file descriptor offered or used,
 * no rename, no file (issue 9 point 6: the server depends neither on
 * descriptors nor on renames). Blobs and upload sessions' bytes are growable
 * buffers in two hash tables (by digest text, by upload id) behind one mutex.
 * Selected with storage_opts.test_blobs (blob_nofd_selected) when
 * OCIREG_TEST_BLOBS=mem. The bytes live as long as the storage is open: a
 * test that reopens a root finds its rows but not its blobs. */
#ifndef OCIREG_TESTS_BLOB_MEM_H
#define OCIREG_TESTS_BLOB_MEM_H

#include "common/err.h"

struct blob_backend;

/* blob_mem_replace - a new, empty memory backend in place of fs (closed
 * here: nothing of it is used); NULL with ERR_NOMEM */
struct blob_backend *blob_mem_replace(struct blob_backend *fs, struct err *e);
/* blob_mem_selected - OCIREG_TEST_BLOBS=mem: tests of the filesystem
 * backend's fault injection (storage_opts.fault, the fsync hook) skip */
int blob_mem_selected(void);

#endif
