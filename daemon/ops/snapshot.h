/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshot.h: an immutable copy of the daemon's statistics, taken by the
 * main thread and read by the bus thread. The bus thread never sees a
 * struct manager or struct client: everything D-Bus shows comes from here.
 * Reference counted: a reader keeps the snapshot it took while the main
 * thread publishes newer ones.
 */
#ifndef HP_SNAPSHOT_H
#define HP_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "coverage.h"
#include "hugepaged-protocol.h"
#include "hugetlb.h"

struct manager;

struct snapshot_range {
        uint64_t start, end;
        uint32_t threshold;     /* 0 = the client's default */
};

/* In-kernel tracing (trace.h) of one process or of all: 0 when it is off. */
struct snapshot_kernel {
        uint64_t faults;                /* faults that slept in handle_userfault */
        uint64_t fault_p50_ns, fault_p99_ns;
        uint64_t collapse_ok, collapse_mapped, collapse_failed;
        uint64_t khugepaged_ok;
        uint64_t thp_splits;
};

struct snapshot_client {
        uint64_t id;            /* the daemon's client id: newest wins for a pid */
        pid_t pid;
        uid_t uid;
        char comm[16];
        char exe[64];           /* basename of /proc/PID/exe at connect time */
        struct hp_stats s;      /* s.threshold: the client's default threshold */
        struct snapshot_kernel kernel;
        uint64_t hugetlb_pages;         /* hugetlb pages charged to it now */
        uint64_t hugetlb_faults;        /* its hugetlb faults served */
        uint64_t hugetlb_prefilled;     /* its pages filled ahead of a stream */
        struct coverage coverage;       /* coverage.h */
        uint32_t max_window;
        bool dense_predict;
        bool policy_explicit;   /* set by the client itself or SetPolicy */
        struct snapshot_range *ranges;
        size_t n_ranges;
};

struct snapshot {
        int refs;
        uint64_t taken_ns;      /* CLOCK_MONOTONIC */
        /* Global counters, names of DESIGN.md. Totals since start for the
         * event counters; current values for the state counters. */
        struct hp_stats total;
        uint64_t clients;
        uint64_t pool_chunks, pool_bytes, pressure_level;  /* no pool yet: 0 */
        struct hugetlb_stats hugetlb;   /* hugetlb.h */
        struct coverage coverage;       /* sums of the clients' (permille: of the sums) */
        bool tracing;                   /* in-kernel tracing runs */
        struct snapshot_kernel kernel;  /* of every process ever traced */
        /* The configuration in force. */
        char config_file[256];
        uint32_t threshold, max_window;
        bool dense_predict;
        struct snapshot_client *v;      /* sorted by pid, one per pid */
        size_t n;
};

/* Main thread: copy what the manager holds now. NULL on allocation failure. */
struct snapshot *snapshot_take(struct manager *m);
struct snapshot *snapshot_ref(struct snapshot *s);
struct snapshot *snapshot_unref(struct snapshot *s);
/* The entry of pid, or NULL. */
const struct snapshot_client *snapshot_find(const struct snapshot *s, pid_t pid);

#endif
