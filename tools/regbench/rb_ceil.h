/* rb_ceil.h - the machine's ceilings, measured in-process: loopback TCP
 * throughput (one connection, 256 KiB writes) and single-core SHA-256 rate. */
#ifndef REGBENCH_RB_CEIL_H
#define REGBENCH_RB_CEIL_H

struct err;

/* rb_ceil_loopback - MB/s (1e6 bytes) of one TCP stream over 127.0.0.1 for about
 * `seconds`. Returns 0 and *mbs, -1 on a socket failure (e filled). */
int rb_ceil_loopback(double seconds, double *mbs, struct err *e);

/* rb_ceil_sha256 - MB/s of SHA-256 (OpenSSL EVP, 1 MiB updates) on one core. */
int rb_ceil_sha256(double seconds, double *mbs, struct err *e);

/* rb_free_port - a TCP port on 127.0.0.1 that was free a moment ago. */
int rb_free_port(int *port, struct err *e);

#endif
