/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * promote.c: turns reservations into huge pages, off the fault path.
 *
 * The main thread queues a job per region; worker threads run it.
 *  - Native jobs: the main thread has unregistered the region, so the
 *    kernel serves faults there itself, then queued the job; the worker runs
 *    process_madvise(MADV_COLLAPSE), and the main thread registers the
 *    region again when the job reports back, after checking that the mapping
 *    is still the one it unregistered (an munmap of an unregistered region
 *    produces no event: the address could hold a thread stack by now).
 *    Three ways in, all through fault.c:
 *      threshold: the region reached the promotion threshold; collapse
 *        copies its pages into a THP and fills the holes with zeros itself;
 *      dense path: the faulting thread was woken and takes a native THP
 *        fault; the collapse then finds the THP there (or builds it from the
 *        4 KiB pages the thread got instead);
 *      ahead: regions a sequential stream will reach next; the job first
 *        looks when the stream can be there, and a region the stream never
 *        reaches is simply registered again, untouched.
 *    A region that became a THP stays unregistered (REGION_F_UNARMED)
 *    until the jobs next to it are done, and its run is registered again
 *    in one go: registering waits for any fault in progress in the VMA it
 *    splits, which in a stream is the stream's THP fault (rearm_run).
 *    While unregistered, a region splits its VMA (the first region of a
 *    range is never handed over: anon.c): a resizing mremap() fails with
 *    EFAULT, which the shim answers with SYNC (wait for the jobs in that
 *    span) and a retry. The VMA budget (policy.h) bounds how
 *    many regions of a client are unregistered at once.
 *  - Fill jobs, past that bound: UFFDIO_COPY zeros into the region's holes
 *    (collapse refuses pte_none entries in uffd-armed VMAs), then
 *    MADV_COLLAPSE with the region registered the whole time.
 * Jobs are queued by a fault thread (or the main thread) with the client
 * locked; they run on a workq (workq.h) and come back to the main thread,
 * which applies their result with the client locked. Workers never touch client or region objects: a job
 * carries a reference to the client's fds and a copy of the region's
 * populated bitmap. Registering a region again is its backend's (rearm).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "compat.h"
#include "fault.h"
#include "log.h"
#include "manager.h"
#include "promote.h"
#include "util.h"
#include "vma.h"
#include "workq.h"

#define NATIVE_WAIT_NS (100 * 1000000ull)     /* for the woken thread's THP fault */
#define NATIVE_RETRY_US 200
#define NATIVE_RETRY_MAX_US 3200 /* a stream on memory the host must back first: ~3 ms a region */
#define COLLAPSE_TRIES 3
#define FILL_AGAIN_TRIES 2000   /* x 50 us: an unmap or remap the main thread has to read */

struct promote_job {
        struct work w;          /* prio 0: fills and native jobs (until a region is
                                 * filled its faults keep coming to us, while a
                                 * collapse only makes it faster); 1: collapses */
        uint64_t client_id;
        uint64_t idx;
        struct client_fds *fds;
        bool native;
        bool ahead;             /* native, ahead of a stream: maybe never touched */
        uint64_t t_queued;
        unsigned retry_us;      /* native: next look after this long (doubles: each look drains
                                 * every CPU's LRU caches, MADV_COLLAPSE's lru_add_drain_all) */
        uint64_t bits[HP_REGION_PAGES / 64];   /* fill: pages known populated at queue time */
        bool fill_done;         /* fill: holes filled, the collapse is next */
        unsigned filled;        /* fill: pages copied by the worker */
        int result;             /* 0 or -errno of the collapse */
        const void *zero;       /* HP_REGION_SIZE of zeros: the fill source */
};

static void sleep_us(long us)
{
        struct timespec ts = { .tv_sec = 0, .tv_nsec = us * 1000 };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Copy zeros into every page of the region not known to be populated. */
static int fill_holes(struct promote_job *j, const void *zero)
{
        uint64_t start = j->idx << REGION_SHIFT;
        unsigned p = 0, again = 0;

        while (p < HP_REGION_PAGES) {
                if (j->bits[p / 64] & (1ull << (p % 64))) {
                        p++;
                        continue;
                }
                unsigned n = 1;
                while (p + n < HP_REGION_PAGES && !(j->bits[(p + n) / 64] & (1ull << ((p + n) % 64))))
                        n++;
                struct uffdio_copy cp = {
                        .dst = start + ((uint64_t)p << PAGE_SHIFT_4K),
                        .src = (uint64_t)(uintptr_t)zero,
                        .len = (uint64_t)n << PAGE_SHIFT_4K,
                };
                if (ioctl(j->fds->uffd, UFFDIO_COPY, &cp) == 0) {
                        j->filled += n;
                        p += n;
                        continue;
                }
                int e = -errno;
                if (cp.copy > 0) {                      /* partial: stopped at a populated page */
                        unsigned done = (unsigned)(cp.copy >> PAGE_SHIFT_4K);
                        j->filled += done;
                        p += done;
                } else if (e == -EEXIST) {
                        p++;                            /* the client got there first */
                } else if (e == -EAGAIN && again++ < FILL_AGAIN_TRIES &&
                           !__atomic_load_n(&j->fds->gone, __ATOMIC_ACQUIRE)) {
                        sleep_us(50);                   /* an mmap change is in flight */
                } else {
                        /* -EAGAIN lasts until the main thread reads the
                         * event; for a client being dropped nobody will,
                         * and its munmap() waits for us to let go of the
                         * uffd: never wait for ever. */
                        return e;                       /* -ENOENT: gone; -ESRCH: exiting */
                }
        }
        return 0;
}

static void run_collapse(struct promote_job *j)
{
        uint64_t start = j->idx << REGION_SHIFT;
        struct iovec iov = { .iov_base = (void *)(uintptr_t)start, .iov_len = HP_REGION_SIZE };
        int e = 0;

        for (int i = 0;; i++) {
                if (hp_process_madvise(j->fds->pidfd, &iov, 1, MADV_COLLAPSE, 0) >= 0) {
                        e = 0;
                        break;
                }
                e = -errno;
                if (e == -EAGAIN && i < COLLAPSE_TRIES) {
                        sleep_us(1000);
                        continue;
                }
                break;
        }
        j->result = e;
}

/* A worker: one step of a job. */
static enum work_step run_job(struct work *w, void *data)
{
        struct promote_job *j = (struct promote_job *)w;

        if (j->native) {
                run_collapse(j);
                /* -EINVAL: nothing mapped there yet (the woken thread has not
                 * run). Let other jobs go first and look again, for a while;
                 * native jobs look again after NATIVE_RETRY_US, then twice as
                 * long each time: many of them waiting (a stream's regions
                 * ahead) must not keep the worker spinning, nor interrupt the
                 * stream's CPU with LRU drains. */
                if (j->result == -EINVAL && now_ns() - j->t_queued < NATIVE_WAIT_NS &&
                    !(j->ahead && __atomic_load_n(&j->fds->hurry, __ATOMIC_ACQUIRE))) {
                        j->retry_us = j->retry_us ? j->retry_us * 2 : NATIVE_RETRY_US;
                        if (j->retry_us > NATIVE_RETRY_MAX_US)
                                j->retry_us = NATIVE_RETRY_MAX_US;
                        j->w.not_before_ns = now_ns() + j->retry_us * 1000ull;
                        return WORK_AGAIN;
                }
                return WORK_DONE;
        }
        if (!j->fill_done) {
                int e = fill_holes(j, j->zero);
                if (e < 0) {
                        j->result = e;
                        return WORK_DONE;
                }
                j->fill_done = true;
                j->w.prio = 1;          /* filled: its collapse waits behind the urgent jobs */
                return WORK_AGAIN;
        }
        run_collapse(j);
        return WORK_DONE;
}

static void job_free(struct promote_job *j)
{
        client_fds_unref(j->fds);
        free(j);
}

static void job_drop(struct work *w, void *data)
{
        job_free((struct promote_job *)w);
}

static void job_done(struct work *w, void *data);

static const struct workq_ops promote_ops = {
        .run = run_job,
        .done = job_done,
        .drop = job_drop,
};

int promote_start(struct manager *m, unsigned workers)
{
        return workq_new(&m->loop, "hp-promote", workers, &promote_ops, m, &m->pq);
}

void promote_stop(struct manager *m)
{
        struct workq *q = m->pq;
        m->pq = NULL;
        workq_free(q);
}

static bool job_of_client(const struct work *w, void *ud)
{
        return ((const struct promote_job *)w)->client_id == *(const uint64_t *)ud;
}

void promote_forget_client(struct manager *m, uint64_t client_id)
{
        if (m->pq)
                workq_drop_if(m->pq, job_of_client, &client_id);
}

int promote_region(struct client *c, struct region *r, bool native, uint64_t not_before_ns)
{
        struct promote_job *j = c->m->pq ? calloc(1, sizeof(*j)) : NULL;

        if (!j)
                return -ENOMEM;
        j->w.prio = 0;
        j->w.not_before_ns = native ? not_before_ns : 0;
        j->client_id = c->id;
        j->idx = r->idx;
        j->native = native;
        j->ahead = r->flags & REGION_F_AHEAD;
        j->t_queued = now_ns();
        j->fds = client_fds_ref(c->fds);
        j->zero = c->m->zero_page;
        memcpy(j->bits, r->bits, sizeof(j->bits));
        r->state = REGION_PROMOTING;
        workq_push(c->m->pq, &j->w);
        return 0;
}

/*
 * Register regions [lo, hi) handed to the kernel again, through their
 * backend, if their mapping is still the one we unregistered: one
 * registration per range they fall in, region by region where that fails.
 * An munmap of an unregistered region produces no event, so without this
 * check a new mapping at the same address (a thread stack) could be
 * registered behind its owner's back. A region that is no longer ours is
 * dropped, with the range there (no events come for it any more).
 */
static void rearm_span(struct client *c, uint64_t lo, uint64_t hi)
{
        for (uint64_t idx = lo; idx < hi;) {
                uint64_t start = idx << REGION_SHIFT;
                struct range *rg = range_find(&c->ranges, start);
                const struct backend *b = rg ? backend_of(rg->backend) : NULL;
                uint64_t n = 1;
                char why[160] = "";

                if (rg && b && b->rearm) {
                        uint64_t last = rg->end >> REGION_SHIFT;
                        n = (last < hi ? last : hi) - idx;
                        if (n > 1 && b->rearm(c, rg, start, n << REGION_SHIFT, why, sizeof(why))) {
                                idx += n;
                                continue;
                        }
                        n = 1;
                }
                if (!rg || rg->end < start + HP_REGION_SIZE || !b || !b->rearm)
                        snprintf(why, sizeof(why), "no longer inside a range");
                else if (b->rearm(c, rg, start, HP_REGION_SIZE, why, sizeof(why))) {
                        idx++;
                        continue;
                }
                log_debug("client %d: %#" PRIx64 " stays unmanaged: %s", c->pid, start,
                          why[0] ? why : "no longer mapped as it was");
                struct region *r = region_lookup(&c->regions, idx);
                if (r)
                        region_remove(&c->regions, r);
                range_remove_span(&c->ranges, start, start + HP_REGION_SIZE);
                idx++;
        }
}

static bool unarmed(const struct region *r)
{
        return r && (r->flags & REGION_F_UNARMED);
}

/*
 * The run of UNARMED regions around idx: register it again in one go once
 * no job of a region next to it is still out (a stream going on through
 * regions handed over ahead of it), or at once when `now`. Registering
 * splits the VMA the stream faults in: it waits for the fault in progress
 * there, and faults elsewhere in that VMA wait for it. Once per run, not
 * once per region: never, before, did the main thread stop serving faults
 * for the length of a THP fault per region of a stream.
 */
static void rearm_run(struct client *c, uint64_t idx, bool now)
{
        uint64_t lo = idx, hi = idx + 1;

        if (!unarmed(region_lookup(&c->regions, idx)))
                return;
        while (lo > 0 && unarmed(region_lookup(&c->regions, lo - 1)))
                lo--;
        while (unarmed(region_lookup(&c->regions, hi)))
                hi++;
        if (!now) {
                /* Only a job in the same range (one block of the program)
                 * can be its stream going on: a job next door, in another
                 * range, must not keep a whole block handed over (its
                 * VMA, all unregistered, would move on an mremap() with
                 * no event, and be lost to us). */
                const struct range *rg = range_find(&c->ranges, lo << REGION_SHIFT);
                const struct region *before = lo > 0 && rg && rg->start <= ((lo - 1) << REGION_SHIFT) ?
                                                      region_lookup(&c->regions, lo - 1) : NULL;
                const struct region *after = rg && rg->end >= ((hi + 1) << REGION_SHIFT) ?
                                                     region_lookup(&c->regions, hi) : NULL;
                if ((before && before->state == REGION_PROMOTING) || (after && after->state == REGION_PROMOTING))
                        return;
        }
        for (uint64_t i = lo; i < hi; i++) {
                struct region *r = region_lookup(&c->regions, i);
                r->flags &= ~REGION_F_UNARMED;
        }
        c->unregistered -= c->unregistered >= hi - lo ? (unsigned)(hi - lo) : c->unregistered;
        rearm_span(c, lo, hi);
}

static void rearm_all(struct client *c, bool now);

struct unarmed_list {
        uint64_t *v;
        size_t n, cap;
};

static void collect_unarmed(struct region_table *t, struct region *r, void *ud)
{
        struct unarmed_list *l = ud;
        if ((r->flags & REGION_F_UNARMED) && l->n < l->cap)
                l->v[l->n++] = r->idx;
}

void promote_rearm_pending(struct client *c)
{
        rearm_all(c, true);
}

void promote_rearm_idle(struct client *c)
{
        if (c->unregistered)
                rearm_all(c, false);
}

static void rearm_all(struct client *c, bool now)
{
        struct unarmed_list l = { .cap = c->regions.count };

        if (!c->regions.count)
                return;
        l.v = calloc(l.cap, sizeof(*l.v));
        if (!l.v)
                return;
        region_foreach_in(&c->regions, 0, UINT64_MAX, collect_unarmed, &l);
        for (size_t i = 0; i < l.n; i++)
                rearm_run(c, l.v[i], now);      /* later ones of a run are no longer unarmed */
        free(l.v);
}

static void job_apply(struct client *c, struct promote_job *j)
{
        uint64_t dt = now_ns() - j->t_queued;
        struct region *r = region_lookup(&c->regions, j->idx);

        if (j->native && c->unregistered)
                c->unregistered--;
        if (!r || r->state != REGION_PROMOTING)
                return;
        if (r->flags & REGION_F_GONE || j->result == -ENOENT ||
            (j->native && j->result == -ENOMEM && vma_within(c->maps_fd, j->idx << REGION_SHIFT, 0, ~0ull) <= 0)) {
                /* Unmapped or replaced while the worker had it. */
                region_remove(&c->regions, r);
                return;
        }
        if (j->native && j->result == 0 && !c->syncs) {
                /* A THP: registered again with the rest of its run once the
                 * stream is through (rearm_run); handed over till then. The
                 * first region of its range, never handed over (anon.c,
                 * promote_threshold), keeps the range's VMA split, so an
                 * mremap() fails and the shim asks for a SYNC first. */
                r->flags |= REGION_F_UNARMED;
                c->unregistered++;
        } else if (j->native) {
                uint64_t idx = r->idx;
                rearm_span(c, idx, idx + 1);
                r = region_lookup(&c->regions, idx);
                if (!r) {
                        /* unmanaged from now on */
                        if (j->result == 0)
                                c->c.promotions++;
                        return;
                }
        }
        if (j->native && j->result == -EINVAL && (r->flags & REGION_F_AHEAD)) {
                /* Handed over ahead of a stream that never got there:
                 * untouched, as if we had never seen it. */
                region_remove(&c->regions, r);
                return;
        }
        if (j->native && j->result != 0) {
                /* No THP (the thread faulted late, or got 4 KiB pages): an
                 * ordinary reservation now, contents unknown (copies that
                 * find a page report -EEXIST and mark it). */
                memset(r->bits, 0, sizeof(r->bits));
                r->populated = 0;
                r->next_page = UINT16_MAX;
                r->window = 0;
                r->state = REGION_RESERVED;
                r->flags &= ~REGION_F_DENSE;
                c->c.promotions_failed++;
                return;
        }
        /* Filled or natively faulted: every page is there either way. */
        unsigned in_use = r->populated;
        region_fill(r);
        if (j->result == 0) {
                r->state = REGION_HUGE;
                /* what the promotion zero-filled; a region handed to the
                 * kernel at a stream is the program's to fill */
                r->bloat = (r->flags & REGION_F_DENSE) ? 0 : (uint16_t)(HP_REGION_PAGES - in_use);
                client_bloat_add(c, r);
                c->c.promotions++;
                histogram_add(&c->c.promotion_latency_ns, dt);
        } else {
                r->state = REGION_RESERVED;
                r->flags |= REGION_F_NO_PROMOTE;
                c->c.promotions_failed++;
                log_debug_errno(j->result, "client %d: collapse of %#" PRIx64 " failed: %m", c->pid,
                                j->idx << REGION_SHIFT);
        }
        c->c.pages_populated += j->filled;
}

/* The main thread: a job finished. */
static void job_done(struct work *w, void *data)
{
        struct promote_job *j = (struct promote_job *)w;
        struct client *c = client_by_id(data, j->client_id);

        if (c) {
                client_lock(c);
                if (c->state == CLIENT_READY) {
                        job_apply(c, j);
                        for (uint64_t i = j->idx ? j->idx - 1 : 0; i <= j->idx + 1; i++)
                                rearm_run(c, i, c->syncs != NULL);
                        if (c->syncs)
                                client_syncs_check(c);
                }
                client_unlock(c);
        }
        job_free(j);
}
