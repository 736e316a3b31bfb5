/* fuzz_http.h - one connection of the real connection layer (server/http_conn.c)
 * driven from a byte buffer, for the libFuzzer targets: no listening socket, no
 * event loop. The connection's replies go to one end of a socketpair whose other
 * end the driver drains; input is handed over with http_conn_feed exactly as
 * the read event would, and a reply the socket could not take is finished the
 * way the write event would (http_conn_flush, then the kept input). */
#ifndef OCIREG_FUZZ_HTTP_H
#define OCIREG_FUZZ_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "server/http.h"

/* fuzz_http_init - once per process: a server and one worker with the given
 * limits and app (dispatch is called with wctx), logs silenced. Aborts on
 * failure (a fuzz target cannot run without it). */
void fuzz_http_init(const struct http_server_opts *o, const struct http_app *app, void *wctx);

/* fuzz_http_run - one connection over data[0..len), handed over in reads of
 * `piece` bytes (0: one read). Returns the bytes the connection wrote back;
 * when out is not NULL, the first cap of them are copied there. */
size_t fuzz_http_run(const uint8_t *data, size_t len, size_t piece, char *out, size_t cap);

#endif
