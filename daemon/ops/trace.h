/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * trace.h: optional in-kernel tracing (eBPF, libbpf) of the processes the
 * daemon manages: fault latency as the program sees it, MADV_COLLAPSE
 * results and THP splits (bpf/fault-trace.bpf.c says how).
 *
 * Every function accepts t == NULL and then returns -EOPNOTSUPP, so callers
 * need not care whether tracing runs: without BPF (not built, no BTF, no
 * CAP_BPF/CAP_PERFMON, a kernel refusing the programs) the daemon works the
 * same, minus these numbers. Main thread only.
 */
#ifndef HP_TRACE_H
#define HP_TRACE_H

#include <stdint.h>
#include <sys/types.h>

#include "stats.h"

struct trace;

struct trace_stats {
        uint64_t faults;                /* faults that slept in handle_userfault */
        struct histogram fault_latency_ns; /* their latency, fault entry to return to user */
        uint64_t fault_p50_ns, fault_p99_ns;
        uint64_t collapse_ok;           /* MADV_COLLAPSE made a THP */
        uint64_t collapse_mapped;       /* MADV_COLLAPSE found one there (native THP fault) */
        uint64_t collapse_failed;
        uint64_t khugepaged_ok;         /* khugepaged collapsed a region of the process */
        uint64_t thp_splits;            /* PMD mappings split by the process */
};

/* Load and attach the tracer. Logs once: "fault tracing on", or
 * "fault tracing off: <why>" and returns -EOPNOTSUPP (or -errno). */
int trace_start(struct trace **ret);
struct trace *trace_stop(struct trace *t);

/* Trace a managed process (by tgid) from now on / stop and forget it. The
 * totals of removed processes stay in trace_read(t, 0, ...). */
int trace_add_pid(struct trace *t, pid_t pid);
int trace_remove_pid(struct trace *t, pid_t pid);

/* Statistics of one process, or of all processes ever traced for pid 0. */
int trace_read(struct trace *t, pid_t pid, struct trace_stats *ret);

#endif
