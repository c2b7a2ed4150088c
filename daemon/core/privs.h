/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * privs.h: what the daemon keeps of root's powers once it is set up.
 */
#ifndef HP_PRIVS_H
#define HP_PRIVS_H

#include <stdint.h>

/*
 * Drop every capability except the ones in privs.c's table, from the
 * effective, permitted, inheritable, ambient and bounding sets; set
 * no_new_privs; make the process non-dumpable. Capabilities are per thread:
 * call it before any thread is started (threads inherit the reduced sets).
 * 0 or -errno (logged).
 */
int privs_drop(void);

/*
 * Around loading the eBPF tracer (trace_start()): the effective set is
 * narrowed to CAP_BPF, CAP_PERFMON and CAP_SYSLOG (those of them the process
 * has), so the loader runs with what the kernel asks of it and nothing
 * else; then put back as it was. The permitted set is untouched:
 * privs_drop() empties it of all three afterwards. Main thread, before any thread starts. 0 or -errno.
 */
int privs_tracing_begin(uint64_t *ret_saved_effective);
int privs_tracing_end(uint64_t saved_effective);

#endif
