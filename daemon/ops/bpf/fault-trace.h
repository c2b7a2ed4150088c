/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault-trace.h: what the in-kernel tracer (fault-trace.bpf.c) and its
 * loader (../trace.c) share: the per-process record kept in the `procs`
 * map. Included by BPF code (after vmlinux.h) and by the daemon.
 *
 * The latency histogram uses the buckets of stats.h (log-linear, 8 per
 * power of two) restricted to TRACE_HIST_FIRST.., so the loader copies it
 * into a struct histogram unchanged: bucket i here is stats.h bucket
 * TRACE_HIST_FIRST + i. Values below 512 ns count in the first bucket, above
 * ~34 s in the last.
 */
#ifndef HP_FAULT_TRACE_H
#define HP_FAULT_TRACE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define TRACE_HIST_SUB_BITS 3
#define TRACE_HIST_FIRST 56     /* stats.h bucket of 512 ns: (9 - 2) * 8 */
#define TRACE_HIST_BUCKETS 216  /* up to stats.h bucket 271: 2^35 ns */
#define TRACE_MAX_PROCS 8192    /* managed processes traced at once */

struct trace_proc {
        __u64 faults;           /* faults that slept in handle_userfault */
        __u64 fault_ns;         /* their total time, fault entry to return */
        __u64 collapse_ok;      /* MADV_COLLAPSE scans that made a THP */
        __u64 collapse_mapped;  /* ... that found one there already (native THP fault) */
        __u64 collapse_failed;  /* ... that failed (any other result but "nothing mapped yet") */
        __u64 khugepaged_ok;    /* collapses by khugepaged */
        __u64 thp_splits;       /* PMD mappings split (not unmapped) by the process */
        __u32 hist[TRACE_HIST_BUCKETS];
};

#endif
