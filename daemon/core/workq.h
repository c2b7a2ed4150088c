/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * workq.h: named worker threads fed from one queue, whose finished jobs
 * come back to the main thread (an eventfd the io_uring loop watches). The
 * promotion workers (promote.c) and the hugetlb pool and fill threads
 * (backend/hugetlb-pool.c) are each one workq.
 *
 * A job embeds `struct work` and is owned by whoever holds it: the queue,
 * then one worker while it runs, then the done list, then the main thread's
 * `done` callback, which frees it. Jobs are taken by priority (0 first),
 * within a priority in order, and never before their not_before_ns.
 */
#ifndef HP_WORKQ_H
#define HP_WORKQ_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct workq;

#define WORKQ_PRIOS 2

struct work {
        struct work *next;
        uint64_t not_before_ns; /* CLOCK_MONOTONIC; 0: at once */
        unsigned prio;          /* < WORKQ_PRIOS */
};

enum work_step {
        WORK_DONE,              /* to the main thread's `done` */
        WORK_AGAIN,             /* back in the queue at w->prio, not before w->not_before_ns */
};

struct workq_ops {
        enum work_step (*run)(struct work *w, void *data);     /* a worker thread */
        void (*done)(struct work *w, void *data);              /* the main thread: frees w */
        void (*drop)(struct work *w, void *data);              /* never run, or never reported: frees w */
};

/* Start `threads` threads named `name`; results are delivered from loop l. */
int workq_new(struct loop *l, const char *name, unsigned threads, const struct workq_ops *ops, void *data,
              struct workq **ret);
/* Stop the threads (a running job finishes first), then drop every job
 * still queued or not yet reported. */
void workq_free(struct workq *q);
void workq_push(struct workq *q, struct work *w);
/* Drop the queued (not running) jobs that match. */
void workq_drop_if(struct workq *q, bool (*match)(const struct work *w, void *ud), void *ud);
unsigned workq_threads(const struct workq *q);

#endif
