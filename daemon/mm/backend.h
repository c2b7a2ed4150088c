/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * backend.h: the interface every kind of client memory implements (the
 * kernel's uffd selftests keep one ops table per memory type the same way).
 * Each backend is one `struct backend` in backend/, with its own files and
 * its own per-client state behind client->backend[kind]; the core (loop,
 * clients, ranges, fault dispatch, statistics) calls the table and names no
 * backend. Adding a kind of memory is a new file in backend/ and one entry
 * in backend.c's list.
 *
 * Threads: `fault` (and `span_gone`) run on a fault thread
 * (fault-threads.h), every other operation on the main thread; an
 * operation on a client always has the client's lock held. What `fault`
 * touches besides its client must be safe from several fault threads at
 * once: the backend's global state is set up before they start (`start`)
 * and read-only to them, or under a lock of its own; counters it bumps go
 * to the client. A backend's own threads (the hugetlb pool and fill
 * threads) never see a struct client: they get a client id and a
 * reference to its fds (client.h).
 */
#ifndef HP_BACKEND_H
#define HP_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hugepaged-protocol.h"

struct client;
struct manager;
struct range;

#define BACKEND_COUNTERS_MAX 16 /* counters of all backends together */

/* A counter a backend publishes besides the core's (struct hp_stats). */
struct backend_counter {
        const char *property;   /* D-Bus property (Manager; Client too if per_client), e.g. "HugetlbFaults" */
        const char *key;        /* the same in logs and JSON, e.g. "hugetlb_faults" */
        bool per_client;        /* also counted per client */
};

struct backend {
        const char *name;       /* "anon", "hugetlb": logs and documentation */
        uint32_t kind;          /* the HP_RANGE_* of its ranges */

        /* Daemon lifetime: start once privileges are dropped and the loop
         * exists (may leave the backend off: then register_range refuses);
         * stop after the loop has ended, before the clients are freed. */
        int (*start)(struct manager *m);
        void (*stop)(struct manager *m);
        /* Before privileges are dropped (before start): what needs root
         * (e.g. a mount). Failing leaves the backend off, not the daemon.
         * Optional. */
        void (*prepare)(struct manager *m);

        /* HP_MSG_REGISTER of this kind (proto.c checked the message): check
         * the memory and register it, with client_register_range(). 0, or
         * -errno with why set (the core answers the client). */
        int (*register_range)(struct client *c, const struct hp_range_req *req, char *why, size_t whylen);
        /* A child forked without exec (HP_MSG_INHERIT) gets its parent's
         * ranges of this kind registered again, with register_range: only
         * for memory whose fork semantics the kernel keeps on its own. */
        bool fork_inherits;
        /* A page fault at addr in rg, read from the uffd at t0: serve it, or
         * wake the thread so that it faults again. Never block. */
        void (*fault)(struct client *c, struct range *rg, uint64_t addr, uint64_t t0);
        /* Register regions [start, start + len) of rg it had handed to the
         * kernel (promotions) again, in one registration, if their memory is
         * still what the range registered: true when registered; false and
         * why set when it is no longer ours (nothing registered then). */
        bool (*rearm)(struct client *c, const struct range *rg, uint64_t start, uint64_t len, char *why,
                      size_t whylen);
        /* [start, end) was unmapped or its pages dropped (UNMAP, REMOVE),
         * after the core updated its range and region records. Optional. */
        void (*span_gone)(struct client *c, uint64_t start, uint64_t end);

        /* A request type of its own (0: none) and its handler; the handler
         * answers the client. */
        uint32_t request_type;
        void (*request)(struct client *c, const void *msg);

        /* The heartbeat (a few times a second). Optional. */
        void (*tick)(struct manager *m);
        /* The memory pressure level changed (pressure.h): give back what it
         * can, stop growing. Optional. */
        void (*pressure)(struct manager *m, int level);
        /* The client is disconnecting: settle its counters (they are read
         * for the last time next). Optional. */
        void (*client_leaving)(struct client *c);
        /* The client is freed (already unlinked): drop its state, give back
         * what it was charged for. Optional. */
        void (*client_gone)(struct manager *m, struct client *c);

        /* Its counters: names, and their values for one client (c) or for
         * the whole daemon (c == NULL; per-client counters summed over live
         * and past clients). */
        const struct backend_counter *counters;
        size_t ncounters;
        void (*read_counters)(struct manager *m, const struct client *c, uint64_t *v);
};

/* The backends, in HP_RANGE_* order. */
extern const struct backend *const backends[];
extern const size_t n_backends;

/* The backend of a range kind, or NULL for a kind nobody serves. */
const struct backend *backend_of(uint32_t kind);
/* The backend whose own request type this is, or NULL. */
const struct backend *backend_for_request(uint32_t type);

void backends_prepare(struct manager *m);
int backends_start(struct manager *m);
void backends_stop(struct manager *m);
void backends_tick(struct manager *m);
void backends_client_leaving(struct client *c);
void backends_client_gone(struct manager *m, struct client *c);
void backends_span_gone(struct client *c, uint64_t start, uint64_t end);

/* Every backend counter, flattened in backend order: its name and whether
 * it is per client. n <= BACKEND_COUNTERS_MAX. */
size_t backend_counters(const struct backend_counter **ret, size_t max);
/* Their values, in the same order, for c (NULL: daemon totals). */
void backends_read_counters(struct manager *m, const struct client *c, uint64_t v[BACKEND_COUNTERS_MAX]);

#endif
