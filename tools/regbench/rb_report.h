/* rb_report.h - regbench output: a text table or one JSON document.
 *
 * A scenario that had any error (set-up or operation) is reported with its
 * error messages and counts only: never with figures. */
#ifndef REGBENCH_RB_REPORT_H
#define REGBENCH_RB_REPORT_H

#include <stdio.h>

#include "tools/regbench/rb_scen.h"

/* rb_report_table - one line per entry plus the error lines, to f. */
void rb_report_table(FILE *f, const char *url, const struct rb_entry *ents, int n);

/* rb_report_json - {"url":..., "results":[...]} to f. Returns 0, -1 on failure. */
int rb_report_json(FILE *f, const char *url, const struct rb_entry *ents, int n);

#endif
