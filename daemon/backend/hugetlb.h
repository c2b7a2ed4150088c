/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hugetlb.h: the hugetlb backend (HP_RANGE_HUGETLB): private anonymous
 * MAP_HUGETLB ranges whose faults the daemon serves with one 2 MiB
 * UFFDIO_COPY each, and the management of the kernel's pool of 2 MiB huge
 * pages (vm.nr_hugepages) on the clients' behalf.
 *
 * Accounting: a client is charged the 2 MiB pages of its registered hugetlb
 * ranges plus what it last asked for with HP_MSG_HUGETLB_RESERVE (until its
 * next hugetlb registration). The daemon adds pages to the pool only up to
 * HugetlbMaxSize= in total and MaxHugePerClient= per client, and takes back
 * what it added once nobody is charged for it; it never takes the pool
 * below the size it found, and puts back what it changed at exit.
 */
#ifndef HP_HUGETLB_H
#define HP_HUGETLB_H

#include <stdbool.h>
#include <stdint.h>

#include "hugepaged-protocol.h"

struct client;
struct manager;
struct range;

#define HUGETLB_FILL_AHEAD 32     /* pages filled ahead of a sequential stream */

/* Per client, in struct client. */
struct client_hugetlb {
        uint64_t pending;       /* pages of the last HUGETLB_RESERVE, not registered yet */
        uint64_t faults;        /* hugetlb faults served */
        uint64_t prefilled;     /* pages filled ahead of a stream by the fill threads */
        unsigned jobs;          /* requests waiting on the pool thread */
        uint64_t last_eexist;   /* page of the last fault whose copy found -EEXIST */
        uint64_t last_fault;    /* page of the last fault: two in a row make a stream */
        uint64_t ahead_end;     /* the stream's pages are queued up to here */
        unsigned nfilling;
        uint64_t filling[HUGETLB_FILL_AHEAD + 1];       /* pages a fill thread has now */
        bool used;              /* ever asked or registered: hugetlb_tick looks at it */
};

/* Global counters for statistics (snapshot.c). */
struct hugetlb_stats {
        uint64_t pages;         /* charged to clients now */
        uint64_t faults;        /* served since start */
        uint64_t prefilled;     /* pages filled ahead of streams since start */
        uint64_t pool_added;    /* pages the daemon added to vm.nr_hugepages and holds */
        uint64_t pool_base;     /* vm.nr_hugepages when the daemon started */
        uint64_t budget;        /* HugetlbMaxSize= in pages */
};

/* Main thread, after privs_drop(): read the pool, start the pool thread.
 * Without hugetlb support in the kernel the backend is off (logged). */
int hugetlb_start(struct manager *m);
/* At exit, after the loop: stop the pool thread and give back what the
 * daemon added to the pool. */
void hugetlb_stop(struct manager *m);

/* Requests (client.c). Each answers the client. */
void hugetlb_reserve(struct client *c, const struct hp_hugetlb_req *req);
void hugetlb_register(struct client *c, const struct hp_range_req *req);

/* fault.c: a missing fault in a hugetlb range. */
void hugetlb_fault(struct client *c, uint64_t addr, uint64_t t0);
/* c disconnects: count all its fills done, reported or not, before its
 * counters are read for the last time. */
void hugetlb_client_leaving(struct client *c);

/* Pages charged to c now. */
uint64_t hugetlb_client_pages(const struct client *c);
/* A client is being freed (already unlinked): return what it was charged for. */
void hugetlb_client_gone(struct manager *m);
/* Heartbeat: return pages that nobody is charged for any more. */
void hugetlb_tick(struct manager *m);
void hugetlb_stats(struct manager *m, struct hugetlb_stats *ret);

/* Pure: the pool size to write to take back what nobody is charged for:
 * never below base, never more than `added` pages removed. */
uint64_t hugetlb_shrink_target(uint64_t current, uint64_t added, uint64_t charged);
/* Pure: pages to add so that `want` pages are available, or 0; -ENOSPC when
 * the budget (max pages added in total) does not allow it. */
int64_t hugetlb_grow_amount(uint64_t available, uint64_t want, uint64_t added, uint64_t budget);

#endif
