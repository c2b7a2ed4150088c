/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * promote.c: turns reservations into huge pages, off the fault path.
 *
 * The main thread queues a job per region; worker threads run it:
 *   1. UFFDIO_UNREGISTER the 2 MiB region (the main thread already did it
 *      for the dense path, where the faulting thread takes a native THP
 *      fault) — collapse refuses pte_none entries in uffd-armed VMAs;
 *   2. process_madvise(MADV_COLLAPSE): the kernel fills the holes and maps
 *      the region by PMD (or finds the native THP already there);
 *   3. UFFDIO_REGISTER the region again, so its VMA merges back with its
 *      neighbours (no VMA-count growth, events keep flowing, mremap of the
 *      whole mapping keeps working).
 * Results come back through a list and an eventfd; the main thread updates
 * the region records. Workers never touch client or region objects: a job
 * carries its own dup'd pidfd and uffd, so a client may disconnect meanwhile.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
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

#define NATIVE_WAIT_TRIES 100   /* x 200 us: the woken thread's THP fault */
#define COLLAPSE_TRIES 3

struct promote_job {
        struct promote_job *next;
        uint64_t client_id;
        uint64_t idx;
        struct client_fds *fds;
        bool native;
        uint64_t t_queued;
        int result;             /* 0 or -errno of the collapse */
        bool reregistered;
};

struct promote_queue {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct promote_job *todo, **todo_tail;
        struct promote_job *done;
        bool stop;
        int efd;
        unsigned nworkers;
        pthread_t *workers;
};

static void sleep_us(long us)
{
        struct timespec ts = { .tv_sec = 0, .tv_nsec = us * 1000 };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void run_job(struct promote_job *j)
{
        uint64_t start = j->idx << REGION_SHIFT;
        struct uffdio_range ur = { .start = start, .len = HP_REGION_SIZE };
        struct iovec iov = { .iov_base = (void *)(uintptr_t)start, .iov_len = HP_REGION_SIZE };
        int e = 0;

        if (!j->native && ioctl(j->fds->uffd, UFFDIO_UNREGISTER, &ur) < 0) {
                j->result = -errno;
                return; /* still registered: nothing to undo */
        }
        for (int i = 0;; i++) {
                if (hp_process_madvise(j->fds->pidfd, &iov, 1, MADV_COLLAPSE, 0) >= 0) {
                        e = 0;
                        break;
                }
                e = -errno;
                if (e == -ESRCH)
                        break;
                /* Dense path: the woken thread may not have faulted yet
                 * (nothing to collapse). Give it time. */
                if (j->native && i < NATIVE_WAIT_TRIES && (e == -EINVAL || e == -EAGAIN)) {
                        sleep_us(200);
                        continue;
                }
                if (e == -EAGAIN && i < COLLAPSE_TRIES) {
                        sleep_us(1000);
                        continue;
                }
                break;
        }
        j->result = e;
        struct uffdio_register reg = { .range = ur, .mode = UFFDIO_REGISTER_MODE_MISSING };
        j->reregistered = ioctl(j->fds->uffd, UFFDIO_REGISTER, &reg) == 0;
}

static void *worker_main(void *arg)
{
        struct promote_queue *q = arg;

        pthread_mutex_lock(&q->lock);
        for (;;) {
                while (!q->todo && !q->stop)
                        pthread_cond_wait(&q->cond, &q->lock);
                if (q->stop)
                        break;
                struct promote_job *j = q->todo;
                q->todo = j->next;
                if (!q->todo)
                        q->todo_tail = &q->todo;
                pthread_mutex_unlock(&q->lock);

                run_job(j);
                j->fds = client_fds_unref(j->fds);

                pthread_mutex_lock(&q->lock);
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
        pthread_cond_init(&q->cond, NULL);
        q->todo_tail = &q->todo;
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
        for (struct promote_job *j = q->todo, *n; j; j = n) {
                n = j->next;
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
        q->todo_tail = &q->todo;
        for (struct promote_job *j = q->todo, *n; j; j = n) {
                n = j->next;
                if (j->client_id == client_id) {
                        j->next = drop;
                        drop = j;
                } else {
                        *q->todo_tail = j;
                        q->todo_tail = &j->next;
                }
        }
        *q->todo_tail = NULL;
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

int promote_region(struct client *c, struct region *r, bool native)
{
        struct promote_queue *q = c->m->pq;
        struct promote_job *j = calloc(1, sizeof(*j));

        if (!j)
                return -ENOMEM;
        j->client_id = c->id;
        j->idx = r->idx;
        j->native = native;
        j->t_queued = now_ns();
        j->fds = client_fds_ref(c->fds);
        r->state = REGION_PROMOTING;

        pthread_mutex_lock(&q->lock);
        *q->todo_tail = j;
        q->todo_tail = &j->next;
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

static void job_apply(struct client *c, struct promote_job *j)
{
        struct manager *m = c->m;
        uint64_t dt = now_ns() - j->t_queued;
        struct region *r = region_lookup(&c->regions, j->idx);
        if (!r || r->state != REGION_PROMOTING)
                return;
        if (j->result == -ENOMEM && !j->reregistered) {
                /* Nothing mapped there any more: the client unmapped or moved
                 * the region while it was unregistered (no event told us). */
                region_remove(&c->regions, r);
                return;
        }
        if (j->result == 0) {
                r->state = REGION_HUGE;
                region_fill(r);
                c->c.promotions++;
                m->c.promotions++;
                histogram_add(&c->c.promotion_latency_ns, dt);
                histogram_add(&m->c.promotion_latency_ns, dt);
        } else {
                /* Stay at 4 KiB: pages the kernel populated while the region
                 * was unregistered show up as -EEXIST on copy. */
                r->state = REGION_RESERVED;
                r->flags |= REGION_F_NO_PROMOTE;
                c->c.promotions_failed++;
                m->c.promotions_failed++;
                log_debug_errno(j->result, "client %d: collapse of %#" PRIx64 " failed: %m", c->pid,
                                j->idx << REGION_SHIFT);
        }
        if (!j->reregistered)
                log_debug("client %d: region %#" PRIx64 " stays unregistered", c->pid, j->idx << REGION_SHIFT);
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
