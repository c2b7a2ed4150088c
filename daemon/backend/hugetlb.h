/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hugetlb.h: the hugetlb backend's own interfaces, private to backend/: the
 * backend (hugetlb.c: MAP_HUGETLB ranges, their faults and fills) and the
 * pool of 2 MiB huge pages it manages on the clients' behalf
 * (hugetlb-pool.c: vm.nr_hugepages), and the pool's pure arithmetic
 * (hugetlb-size.c, unit-tested). The rest of the daemon knows the backend
 * only as `backend_hugetlb` (backend.h).
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
#include "workq.h"

struct loop;

/* ---- the pool (hugetlb-pool.c) ---------------------------------------------- */

struct hugetlb_pool;

enum pool_job_kind {
        POOL_RESERVE,   /* have `want` pages available, pre-touch what was added; reply */
        POOL_FAULT,     /* have one page available for a fault waiting at addr */
        POOL_SHRINK,    /* give back what the daemon added beyond `charged` */
};

/* A request to the pool thread; it comes back to `done` (hugetlb_pool_new)
 * on the main thread, which frees it. */
struct pool_job {
        struct work w;
        enum pool_job_kind kind;
        uint64_t client_id;
        uint32_t seq;           /* RESERVE: the request to answer */
        uint64_t addr;          /* FAULT: the page */
        uint64_t want;          /* RESERVE, FAULT: pages wanted available */
        uint64_t charged;       /* SHRINK: pages clients are charged for */
        uint64_t budget;        /* RESERVE, FAULT: HugetlbMaxSize= in pages */
        bool no_grow;           /* RESERVE: memory pressure: what is free may be had, nothing added */
        bool shared;            /* RESERVE: for a shared mapping (HP_HUGETLB_SHARED) */
        uint64_t t0;            /* FAULT: when the fault was read */
        uint64_t got;           /* pages added (or, SHRINK, removed) by this job */
        int result;
        char why[HP_ERROR_TEXT];
};

/* Read the pool, adopt what a killed daemon added (the record in
 * state_dir/hugetlb-pool), start the pool thread. 0 with *ret NULL when the
 * kernel has no 2 MiB huge pages (logged): the backend is off. */
int hugetlb_pool_new(struct loop *l, const char *state_dir, void (*done)(struct pool_job *j, void *data),
                     void *data, struct hugetlb_pool **ret);
/* Stop the pool thread; give back everything the daemon added (pages in
 * use become surplus pages and go back when freed). NULL is fine. */
void hugetlb_pool_free(struct hugetlb_pool *p);
/* Queue a job (copied): 0 or -ENOMEM. */
int hugetlb_pool_queue(struct hugetlb_pool *p, const struct pool_job *tmpl);
/* Free pages nobody has reserved: what an allocation can take now. */
uint64_t hugetlb_pool_available(struct hugetlb_pool *p);
/* Pages the daemon added to vm.nr_hugepages and holds now, and the size it found. */
uint64_t hugetlb_pool_added(struct hugetlb_pool *p);
uint64_t hugetlb_pool_base(const struct hugetlb_pool *p);
/* A fault job's pages were used (or not): the pool may shrink past them. */
void hugetlb_pool_release_hold(struct hugetlb_pool *p, uint64_t pages);

/* ---- pure arithmetic (hugetlb-size.c) ---------------------------------------- */

/* The pool size to write to take back what nobody is charged for: never
 * below base, never more than `added` pages removed. */
uint64_t hugetlb_shrink_target(uint64_t current, uint64_t added, uint64_t charged);
/* Pages to add so that `want` pages are available, or 0; -ENOSPC when the
 * budget (max pages added in total) does not allow it. */
int64_t hugetlb_grow_amount(uint64_t available, uint64_t want, uint64_t added, uint64_t budget);

#endif
