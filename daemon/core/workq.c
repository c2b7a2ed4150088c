/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * workq.c: worker threads and their queue (workq.h). The queue, the done
 * list and `stop` are under the lock; a job is touched by one thread at a
 * time (see workq.h for who owns it when).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "util.h"
#include "workq.h"

struct work_list {
        struct work *head, **tail;
};

struct workq {
        const struct workq_ops *ops;
        void *data;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct work_list queue[WORKQ_PRIOS];    /* under lock */
        struct work_list done;                  /* under lock */
        bool stop;                              /* under lock */
        int efd;
        struct watch w_done;
        unsigned nthreads;
        pthread_t *threads;
};

static void list_init(struct work_list *l)
{
        l->head = NULL;
        l->tail = &l->head;
}

static void list_push(struct work_list *l, struct work *w)
{
        w->next = NULL;
        *l->tail = w;
        l->tail = &w->next;
}

static uint64_t now_mono(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Under lock: the first due job by priority, or NULL with *wake_at the
 * earliest time one will be due (0: nothing queued). */
static struct work *pop_due(struct workq *q, uint64_t now, uint64_t *wake_at)
{
        *wake_at = 0;
        for (unsigned p = 0; p < WORKQ_PRIOS; p++) {
                struct work_list *l = &q->queue[p];
                for (struct work **pw = &l->head; *pw; pw = &(*pw)->next) {
                        struct work *w = *pw;
                        if (w->not_before_ns <= now) {
                                *pw = w->next;
                                if (!*pw)
                                        l->tail = pw;
                                return w;
                        }
                        if (!*wake_at || w->not_before_ns < *wake_at)
                                *wake_at = w->not_before_ns;
                }
        }
        return NULL;
}

static void *worker_main(void *arg)
{
        struct workq *q = arg;

        pthread_mutex_lock(&q->lock);
        while (!q->stop) {
                uint64_t wake_at;
                struct work *w = pop_due(q, now_mono(), &wake_at);
                if (!w) {
                        if (wake_at) {
                                struct timespec ts = { .tv_sec = (time_t)(wake_at / 1000000000u),
                                                       .tv_nsec = (long)(wake_at % 1000000000u) };
                                pthread_cond_timedwait(&q->cond, &q->lock, &ts);
                        } else
                                pthread_cond_wait(&q->cond, &q->lock);
                        continue;
                }
                pthread_mutex_unlock(&q->lock);
                enum work_step step = q->ops->run(w, q->data);
                pthread_mutex_lock(&q->lock);
                if (step == WORK_AGAIN) {
                        list_push(&q->queue[w->prio < WORKQ_PRIOS ? w->prio : WORKQ_PRIOS - 1], w);
                        continue;
                }
                list_push(&q->done, w);
                uint64_t one = 1;
                if (write(q->efd, &one, sizeof(one)) < 0) {
                        /* the counter cannot overflow here: nothing to do */
                }
        }
        pthread_mutex_unlock(&q->lock);
        return NULL;
}

static void on_done(struct watch *wt, int revents)
{
        struct workq *q = wt->data;
        uint64_t v;

        if (read(q->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_debug_errno(errno, "eventfd read: %m");
        pthread_mutex_lock(&q->lock);
        struct work *list = q->done.head;
        list_init(&q->done);
        pthread_mutex_unlock(&q->lock);
        while (list) {
                struct work *w = list;
                list = w->next;
                q->ops->done(w, q->data);
        }
}

static void drop_list(struct workq *q, struct work *w)
{
        while (w) {
                struct work *n = w->next;
                q->ops->drop(w, q->data);
                w = n;
        }
}

void workq_free(struct workq *q)
{
        if (!q)
                return;
        pthread_mutex_lock(&q->lock);
        q->stop = true;
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
        for (unsigned i = 0; i < q->nthreads; i++)
                pthread_join(q->threads[i], NULL);
        for (unsigned p = 0; p < WORKQ_PRIOS; p++)
                drop_list(q, q->queue[p].head);
        drop_list(q, q->done.head);
        safe_close(q->efd);
        pthread_mutex_destroy(&q->lock);
        pthread_cond_destroy(&q->cond);
        free(q->threads);
        free(q);
}

int workq_new(struct loop *l, const char *name, unsigned threads, const struct workq_ops *ops, void *data,
              struct workq **ret)
{
        struct workq *q = calloc(1, sizeof(*q));
        int r;

        if (!q)
                return -ENOMEM;
        q->ops = ops;
        q->data = data;
        pthread_mutex_init(&q->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);        /* not_before_ns's clock */
        pthread_cond_init(&q->cond, &ca);
        pthread_condattr_destroy(&ca);
        for (unsigned p = 0; p < WORKQ_PRIOS; p++)
                list_init(&q->queue[p]);
        list_init(&q->done);
        q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        q->threads = calloc(threads ? threads : 1, sizeof(*q->threads));
        if (q->efd < 0 || !q->threads) {
                workq_free(q);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < threads; i++) {
                r = -pthread_create(&q->threads[i], NULL, worker_main, q);
                if (r < 0)
                        break;
                pthread_setname_np(q->threads[i], name);
                q->nthreads++;
        }
        if (q->nthreads == 0 && threads > 0) {
                workq_free(q);
                return r;
        }
        if (q->nthreads < threads)
                log_warning("%s: %u of %u threads started", name, q->nthreads, threads);
        /* Last: once the loop watches the eventfd, the loop must outlive q. */
        r = watch_start(l, &q->w_done, q->efd, on_done, q);
        if (r < 0) {
                workq_free(q);
                return r;
        }
        *ret = q;
        return 0;
}

void workq_push(struct workq *q, struct work *w)
{
        if (w->prio >= WORKQ_PRIOS)
                w->prio = WORKQ_PRIOS - 1;
        pthread_mutex_lock(&q->lock);
        list_push(&q->queue[w->prio], w);
        pthread_cond_signal(&q->cond);
        pthread_mutex_unlock(&q->lock);
}

void workq_drop_if(struct workq *q, bool (*match)(const struct work *w, void *ud), void *ud)
{
        struct work *dropped = NULL;

        pthread_mutex_lock(&q->lock);
        for (unsigned p = 0; p < WORKQ_PRIOS; p++) {
                struct work *w = q->queue[p].head;
                list_init(&q->queue[p]);
                while (w) {
                        struct work *n = w->next;
                        if (match(w, ud)) {
                                w->next = dropped;
                                dropped = w;
                        } else
                                list_push(&q->queue[p], w);
                        w = n;
                }
        }
        pthread_mutex_unlock(&q->lock);
        drop_list(q, dropped);
}

unsigned workq_threads(const struct workq *q)
{
        return q ? q->nthreads : 0;
}
