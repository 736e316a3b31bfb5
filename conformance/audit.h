/* audit.h - the error-format audit: every 4xx response the program receives
 * during a run is inspected, and two checks report on all of them at the end
 * (spec "Error Codes": a JSON error body MUST have the {"errors": [...]} shape;
 * ocireg also promises that every error is JSON). */
#ifndef CONFORMANCE_AUDIT_H
#define CONFORMANCE_AUDIT_H

struct client;

/* audit_start - observe every response of c from now on. */
void audit_start(struct client *c);

/* audit_report - stop observing and emit the checks err-json-shape and
 * err-json-everywhere. */
void audit_report(struct client *c);

#endif
