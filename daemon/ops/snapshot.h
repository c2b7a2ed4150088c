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

#include "backend.h"
#include "coverage.h"
#include "hugepaged-protocol.h"
#include "stats.h"

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

/* Budgets and pressure, of one client or of all (0 where they do not apply). */
struct snapshot_budget {
        uint64_t promotions_skipped_headroom;   /* held back: no room under the cgroup limit */
        uint64_t promotions_skipped_pressure;   /* held back: memory pressure */
        uint64_t promotions_skipped_bloat;      /* held back: a bloat cap */
        uint64_t bloat_bytes;                   /* zero-filled by the promotions of huge regions now */
        uint64_t cgroup_limit_bytes;            /* client: its tightest cgroup limit (0: none) */
        uint64_t cgroup_room_bytes;             /* client: room left under it when last read */
        uint64_t pressure_level;                /* manager: 0 none, 1 some, 2 high */
        uint64_t pressure_events;               /* manager: rises from none */
        uint64_t pressure_triggers;             /* manager: PSI triggers seen */
        uint64_t pressure_released_bytes;       /* manager: given back because of pressure */
        uint64_t pressure_first_release_ns;     /* manager: the last rise to its first release */
        uint64_t mem_available_bytes;           /* manager: MemAvailable when last read */
};

struct snapshot_client {
        uint64_t id;            /* the daemon's client id: newest wins for a pid */
        pid_t pid;
        uid_t uid;
        char comm[16];
        char exe[64];           /* basename of /proc/PID/exe at connect time */
        struct hp_stats s;      /* s.threshold: the client's default threshold */
        struct snapshot_kernel kernel;
        struct snapshot_budget budget;
        uint64_t backend[BACKEND_COUNTERS_MAX];        /* the backends' counters (snapshot.counters) */
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
        struct histogram fault_latency_ns, promotion_latency_ns;  /* of every client */
        uint64_t clients;
        /* The backends' own counters: names (static data, backend.h) and
         * daemon-wide values; each client's are in the same order. */
        const struct backend_counter *counters[BACKEND_COUNTERS_MAX];
        size_t n_counters;
        uint64_t backend[BACKEND_COUNTERS_MAX];
        struct coverage coverage;       /* sums of the clients' (permille: of the sums) */
        bool tracing;                   /* in-kernel tracing runs */
        struct snapshot_kernel kernel;  /* of every process ever traced */
        struct snapshot_budget budget;
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
