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
 *    While unregistered, a region splits its VMA in three: a resizing
 *    mremap() fails with EFAULT, which the shim answers with SYNC (wait for
 *    the jobs in that span) and a retry. fault.c bounds how many regions of a
 *    client are unregistered at once.
 *  - Fill jobs, past that bound: UFFDIO_COPY zeros into the region's holes
 *    (collapse refuses pte_none entries in uffd-armed VMAs), then
 *    MADV_COLLAPSE with the region registered the whole time.
 * Results come back through a list and an eventfd. Workers never touch client
 * or region objects: a job carries a reference to the client's fds and a
 * copy of the region's populated bitmap.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "manager.h"
#include "util.h"

#define NATIVE_WAIT_NS (100 * 1000000ull)     /* for the woken thread's THP fault */
#define NATIVE_RETRY_US 200
#define COLLAPSE_TRIES 3
#define FILL_AGAIN_TRIES 2000   /* x 50 us: an unmap or remap the main thread has to read */

struct promote_job {
        struct promote_job *next;
        uint64_t client_id;
        uint64_t idx;
        struct client_fds *fds;
        bool native;
        bool ahead;             /* native, ahead of a stream: maybe never touched */
        uint64_t t_queued;
        uint64_t t_retry;       /* native: not before this (0: at once) */
        uint64_t bits[HP_REGION_PAGES / 64];   /* fill: pages known populated at queue time */
        bool fill_done;         /* fill: holes filled, the collapse is next */
        unsigned filled;        /* fill: pages copied by the worker */
        int result;             /* 0 or -errno of the collapse */
};

struct job_list {
        struct promote_job *head, **tail;
};

static void job_list_init(struct job_list *l)
{
        l->head = NULL;
        l->tail = &l->head;
}

static void job_list_push(struct job_list *l, struct promote_job *j)
{
        j->next = NULL;
        *l->tail = j;
        l->tail = &j->next;
}

static struct promote_job *job_list_pop(struct job_list *l)
{
        struct promote_job *j = l->head;
        if (j) {
                l->head = j->next;
                if (!l->head)
                        l->tail = &l->head;
        }
        return j;
}

/* Move the jobs of client_id from l to *dropped. */
static void job_list_take_client(struct job_list *l, uint64_t client_id, struct promote_job **dropped)
{
        struct promote_job *j = l->head;
        job_list_init(l);
        while (j) {
                struct promote_job *n = j->next;
                if (j->client_id == client_id) {
                        j->next = *dropped;
                        *dropped = j;
                } else
                        job_list_push(l, j);
                j = n;
        }
}

struct promote_queue {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Fills and native-path jobs first: until a region is filled its
         * faults keep coming to us, while a collapse only makes it faster. */
        struct job_list urgent, collapse;
        struct promote_job *done;
        bool stop;
        int efd;
        const void *zero;       /* HP_REGION_SIZE of zeros: the fill source */
        unsigned nworkers;
        pthread_t *workers;
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

enum job_step {
        JOB_DONE,
        JOB_COLLAPSE_NEXT,      /* filled: queue its collapse */
        JOB_RETRY,              /* native: the thread has not faulted yet */
};

static enum job_step run_job(struct promote_job *j, const void *zero)
{
        if (j->native) {
                run_collapse(j);
                /* -EINVAL: nothing mapped there yet (the woken thread has not
                 * run). Let other jobs go first and look again, for a while. */
                if (j->result == -EINVAL && now_ns() - j->t_queued < NATIVE_WAIT_NS &&
                    !(j->ahead && __atomic_load_n(&j->fds->hurry, __ATOMIC_ACQUIRE)))
                        return JOB_RETRY;
                return JOB_DONE;
        }
        if (!j->fill_done) {
                int e = fill_holes(j, zero);
                if (e < 0) {
                        j->result = e;
                        return JOB_DONE;
                }
                j->fill_done = true;
                return JOB_COLLAPSE_NEXT;
        }
        run_collapse(j);
        return JOB_DONE;
}

/*
 * The next job to run: the first urgent one that is due (fills, and native
 * jobs whose time to look has come), else a collapse. NULL when none is due;
 * *wake_at then tells when the first urgent one will be (0: none queued).
 */
static struct promote_job *pop_due(struct promote_queue *q, uint64_t now, uint64_t *wake_at)
{
        *wake_at = 0;
        for (struct promote_job **pj = &q->urgent.head; *pj; pj = &(*pj)->next) {
                struct promote_job *j = *pj;
                if (j->t_retry <= now) {
                        *pj = j->next;
                        if (!*pj)
                                q->urgent.tail = pj;
                        return j;
                }
                if (!*wake_at || j->t_retry < *wake_at)
                        *wake_at = j->t_retry;
        }
        return job_list_pop(&q->collapse);
}

static void *worker_main(void *arg)
{
        struct promote_queue *q = arg;

        pthread_mutex_lock(&q->lock);
        while (!q->stop) {
                uint64_t wake_at;
                struct promote_job *j = pop_due(q, now_ns(), &wake_at);
                if (!j) {
                        /* Native jobs look again at most every
                         * NATIVE_RETRY_US: many of them waiting (a stream's
                         * regions ahead) must not keep the worker spinning. */
                        if (wake_at) {
                                struct timespec ts = { .tv_sec = (time_t)(wake_at / 1000000000u),
                                                       .tv_nsec = (long)(wake_at % 1000000000u) };
                                pthread_cond_timedwait(&q->cond, &q->lock, &ts);
                        } else
                                pthread_cond_wait(&q->cond, &q->lock);
                        continue;
                }
                pthread_mutex_unlock(&q->lock);

                enum job_step step = run_job(j, q->zero);
                if (step == JOB_DONE)
                        j->fds = client_fds_unref(j->fds);
                else if (step == JOB_RETRY)
                        j->t_retry = now_ns() + NATIVE_RETRY_US * 1000ull;

                pthread_mutex_lock(&q->lock);
                if (step != JOB_DONE) {
                        job_list_push(step == JOB_RETRY ? &q->urgent : &q->collapse, j);
                        continue;
                }
                j->next = q->done;
                q->done = j;
                uint64_t one = 1;
                if (write(q->efd, &one, sizeof(one)) < 0) {
                        /* counter overflow is impossible here; nothing to do */
                }
        }
        pthread_mutex_unlock(&q->lock);
        return NULL;
}

int promote_queue_new(struct manager *m, unsigned nworkers, struct promote_queue **ret)
{
        struct promote_queue *q = calloc(1, sizeof(*q));
        int r;

        if (!q)
                return -ENOMEM;
        pthread_mutex_init(&q->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);        /* now_ns()'s clock */
        pthread_cond_init(&q->cond, &ca);
        pthread_condattr_destroy(&ca);
        job_list_init(&q->urgent);
        job_list_init(&q->collapse);
        q->zero = m->zero_page;
        q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        q->workers = calloc(nworkers, sizeof(*q->workers));
        if (q->efd < 0 || !q->workers) {
                promote_queue_free(q);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < nworkers; i++) {
                r = pthread_create(&q->workers[i], NULL, worker_main, q);
                if (r != 0) {
                        promote_queue_free(q);
                        return -r;
                }
                pthread_setname_np(q->workers[i], "hp-promote");
                q->nworkers++;
        }
        *ret = q;
        return 0;
}

void promote_queue_free(struct promote_queue *q)
{
        if (!q)
                return;
        pthread_mutex_lock(&q->lock);
        q->stop = true;
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
        for (unsigned i = 0; i < q->nworkers; i++)
                pthread_join(q->workers[i], NULL);
        for (struct job_list *l = &q->urgent; l; l = l == &q->urgent ? &q->collapse : NULL)
                for (struct promote_job *j; (j = job_list_pop(l));) {
                        client_fds_unref(j->fds);
                        free(j);
                }
        for (struct promote_job *j = q->done, *n; j; j = n) {
                n = j->next;
                free(j);
        }
        safe_close(q->efd);
        free(q->workers);
        free(q);
}

void promote_forget_client(struct promote_queue *q, uint64_t client_id)
{
        struct promote_job *drop = NULL;

        pthread_mutex_lock(&q->lock);
        job_list_take_client(&q->urgent, client_id, &drop);
        job_list_take_client(&q->collapse, client_id, &drop);
        pthread_mutex_unlock(&q->lock);
        while (drop) {
                struct promote_job *j = drop;
                drop = j->next;
                client_fds_unref(j->fds);
                free(j);
        }
}

struct client_fds *client_fds_ref(struct client_fds *f)
{
        if (f)
                __atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
        return f;
}

struct client_fds *client_fds_unref(struct client_fds *f)
{
        if (f && __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) == 0) {
                /* Last reference to the uffd: the kernel unregisters every
                 * range and blocked faults proceed as ordinary faults. */
                safe_close(f->uffd);
                safe_close(f->pidfd);
                free(f);
        }
        return NULL;
}

int promote_queue_fd(struct promote_queue *q)
{
        return q->efd;
}

int promote_region(struct client *c, struct region *r, bool native, uint64_t not_before_ns)
{
        struct promote_queue *q = c->m->pq;
        struct promote_job *j = calloc(1, sizeof(*j));

        if (!j)
                return -ENOMEM;
        j->client_id = c->id;
        j->idx = r->idx;
        j->native = native;
        j->ahead = r->flags & REGION_F_AHEAD;
        j->t_queued = now_ns();
        j->t_retry = native ? not_before_ns : 0;
        j->fds = client_fds_ref(c->fds);
        memcpy(j->bits, r->bits, sizeof(j->bits));
        r->state = REGION_PROMOTING;

        pthread_mutex_lock(&q->lock);
        job_list_push(&q->urgent, j);
        pthread_cond_signal(&q->cond);
        pthread_mutex_unlock(&q->lock);
        return 0;
}

static void job_apply(struct client *c, struct promote_job *j);

static void job_finish(struct manager *m, struct promote_job *j)
{
        struct client *c = client_by_id(m, j->client_id);

        if (!c || c->state != CLIENT_READY)
                return;
        job_apply(c, j);
        if (c->syncs)
                client_syncs_check(c);
}

/*
 * Register a natively promoted region again, if its mapping is still the
 * one we unregistered: the same private anonymous VMA inside the range we
 * know. An munmap of an unregistered region produces no event, so without
 * this check a new mapping at the same address (a thread stack) could be
 * registered behind its owner's back.
 */
static bool reregister_native(struct client *c, struct region *r)
{
        uint64_t start = r->idx << REGION_SHIFT, end = start + HP_REGION_SIZE;
        struct range *rg = range_find(&c->ranges, start);
        char why[160] = "";

        if (!rg || rg->end < end)
                snprintf(why, sizeof(why), "no longer inside a range");
        else if (vma_check_anon(c->maps_fd, c->pid, start, end, why, sizeof(why)) < 0)
                ;
        else if (vma_within(c->maps_fd, start, rg->start, rg->end) <= 0)
                snprintf(why, sizeof(why), "its mapping reaches out of the range %#" PRIx64 "-%#" PRIx64,
                         rg->start, rg->end);
        else {
                struct uffdio_register reg = { .range = { .start = start, .len = HP_REGION_SIZE },
                                               .mode = UFFDIO_REGISTER_MODE_MISSING };
                if (ioctl(c->uffd, UFFDIO_REGISTER, &reg) == 0)
                        return true;
                snprintf(why, sizeof(why), "UFFDIO_REGISTER: %s", strerror(errno));
        }
        log_debug("client %d: %#" PRIx64 " stays unmanaged: %s", c->pid, start, why);
        return false;
}

static void job_apply(struct client *c, struct promote_job *j)
{
        struct manager *m = c->m;
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
        if (j->native && !reregister_native(c, r)) {
                /* Unmanaged from now on: no events come for it, so keep no
                 * range there either. */
                uint64_t start = r->idx << REGION_SHIFT;
                region_remove(&c->regions, r);
                range_remove_span(&c->ranges, start, start + HP_REGION_SIZE);
                if (j->result == 0) {
                        c->c.promotions++;
                        m->c.promotions++;
                }
                return;
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
                c->c.promotions_failed++;
                m->c.promotions_failed++;
                return;
        }
        /* Filled or natively faulted: every page is there either way. */
        region_fill(r);
        if (j->result == 0) {
                r->state = REGION_HUGE;
                c->c.promotions++;
                m->c.promotions++;
                histogram_add(&c->c.promotion_latency_ns, dt);
                histogram_add(&m->c.promotion_latency_ns, dt);
        } else {
                r->state = REGION_RESERVED;
                r->flags |= REGION_F_NO_PROMOTE;
                c->c.promotions_failed++;
                m->c.promotions_failed++;
                log_debug_errno(j->result, "client %d: collapse of %#" PRIx64 " failed: %m", c->pid,
                                j->idx << REGION_SHIFT);
        }
        if (j->filled) {
                c->c.pages_populated += j->filled;
                m->c.pages_populated += j->filled;
        }
}

void promote_drain_done(struct manager *m)
{
        struct promote_queue *q = m->pq;
        uint64_t v;

        if (read(q->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_debug_errno(errno, "eventfd read: %m");
        pthread_mutex_lock(&q->lock);
        struct promote_job *list = q->done;
        q->done = NULL;
        pthread_mutex_unlock(&q->lock);
        while (list) {
                struct promote_job *j = list;
                list = j->next;
                job_finish(m, j);
                free(j);
        }
}
