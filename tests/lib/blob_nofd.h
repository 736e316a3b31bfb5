/* blob_nofd.h - a test blob backend that offers no file descriptor: the
 * filesystem backend with its readers' and writers' descriptor offers
 * refused, so the server must read bytes through blob_reader_read and write
 * uploads through the synchronous path (issue 9 point 6: the server does not
 * depend on descriptors). Selected with storage_opts.test_blobs, by the unit
 * tests' tu_open* and by inproc when OCIREG_TEST_BLOBS=nofd. */
#ifndef OCIREG_TESTS_BLOB_NOFD_H
#define OCIREG_TESTS_BLOB_NOFD_H

#include "common/err.h"

struct blob_backend;

/* blob_nofd_wrap - the wrapper around fs (owned by it from then on); NULL
 * with ERR_NOMEM (fs closed) */
struct blob_backend *blob_nofd_wrap(struct blob_backend *fs, struct err *e);
/* blob_nofd_selected - storage_opts.test_blobs as OCIREG_TEST_BLOBS asks:
 * blob_nofd_wrap for "nofd", blob_mem_replace (blob_mem.h) for "mem", else
 * NULL. Tests of the filesystem backend's own details skip when it is not
 * NULL. */
struct blob_backend *(*blob_nofd_selected(void))(struct blob_backend *, struct err *);

#endif
