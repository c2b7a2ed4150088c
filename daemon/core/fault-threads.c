/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault-threads.c: the fault threads (fault-threads.h). One epoll set holds
 * every ready client's uffd, EPOLLONESHOT, its event naming the client by
 * id; each thread waits for one event at a time (maxevents 1: a thread
 * never holds a second client's event while it is busy with the first),
 * looks the client up and takes a reference under the table's lock, serves
 * a bounded batch with the client's lock held (fault.c), and re-arms the
 * uffd. A client with more to read goes to the back of the ready list, so
 * the others get their turn.
 *
 * The table and the hand-over list are under `lock`, a leaf lock: nothing
 * else is taken while it is held. A client's lock is taken with no other
 * lock held.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "client.h"
#include "fault-threads.h"
#include "fault.h"
#include "log.h"
#include "manager.h"
#include "util.h"

#define FAULT_THREADS_MAX 256
#define STOP_ID 0       /* client ids start at 1 */

struct entry {
        uint64_t id;
        struct client *c;
};

struct handover {
        uint64_t id;
        const char *why;
};

struct fault_threads {
        struct manager *m;
        int epfd;
        int stop_fd;            /* eventfd, level-triggered: once written, every thread sees it */
        unsigned n;
        pthread_t *threads;

        pthread_mutex_t lock;
        struct entry *tab;      /* under lock: the clients in the epoll set, by id */
        size_t ntab, captab;
        struct handover *gone;  /* under lock: broken uffds, for the main thread to disconnect */
        size_t ngone, capgone;
        int gone_fd;            /* eventfd: the main thread's loop watches it */
        struct watch w_gone;
};

/* Under lock: where id is, or would go. */
static size_t tab_index(const struct fault_threads *ft, uint64_t id)
{
        size_t lo = 0, hi = ft->ntab;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (ft->tab[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static struct client *lookup_ref(struct fault_threads *ft, uint64_t id)
{
        struct client *c = NULL;

        pthread_mutex_lock(&ft->lock);
        size_t i = tab_index(ft, id);
        if (i < ft->ntab && ft->tab[i].id == id)
                c = client_ref(ft->tab[i].c);
        pthread_mutex_unlock(&ft->lock);
        return c;
}

/* c locked: hand c to the main thread, which disconnects it. */
static void hand_over(struct fault_threads *ft, struct client *c, const char *why)
{
        uint64_t one = 1;

        if (c->fault_polled) {
                (void)epoll_ctl(ft->epfd, EPOLL_CTL_DEL, c->fds->uffd, NULL);
                c->fault_polled = false;
        }
        pthread_mutex_lock(&ft->lock);
        if (ft->ngone == ft->capgone) {
                size_t cap = ft->capgone ? ft->capgone * 2 : 16;
                struct handover *v = realloc(ft->gone, cap * sizeof(*v));
                if (v) {
                        ft->gone = v;
                        ft->capgone = cap;
                }
        }
        /* out of memory: its faults go on being served by nobody until
         * its process exits (the pidfd disconnects it then) */
        if (ft->ngone < ft->capgone)
                ft->gone[ft->ngone++] = (struct handover){ .id = c->id, .why = why };
        pthread_mutex_unlock(&ft->lock);
        if (write(ft->gone_fd, &one, sizeof(one)) < 0)
                log_debug_errno(errno, "fault threads: eventfd write: %m");
}

static void serve(struct fault_threads *ft, uint64_t id, uint32_t events)
{
        struct client *c = lookup_ref(ft, id);
        if (!c)
                return;         /* gone since the event */

        pthread_mutex_lock(&c->lock);
        if (c->state == CLIENT_READY && c->fault_polled) {
                int r = (events & (EPOLLERR | EPOLLHUP)) ? -EIO : fault_uffd_ready(c);
                if (r < 0)
                        hand_over(ft, c, r == -EIO ? "userfaultfd error" : "userfaultfd read failed");
                else if (c->state == CLIENT_READY) {
                        struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = c->id };
                        if (epoll_ctl(ft->epfd, EPOLL_CTL_MOD, c->fds->uffd, &ev) < 0) {
                                log_warning_errno(errno, "client %d: cannot watch its userfaultfd again: %m", c->pid);
                                hand_over(ft, c, "userfaultfd cannot be watched");
                        }
                }
        }
        pthread_mutex_unlock(&c->lock);
        client_unref(c);
}

static void *thread_main(void *arg)
{
        struct fault_threads *ft = arg;

        for (;;) {
                struct epoll_event ev;
                int n = epoll_wait(ft->epfd, &ev, 1, -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error_errno(errno, "fault thread: epoll_wait: %m");
                        return NULL;
                }
                if (n == 0)
                        continue;
                if (ev.data.u64 == STOP_ID)
                        return NULL;
                serve(ft, ev.data.u64, ev.events);
        }
}

/* The main thread: disconnect the clients whose uffd broke. */
static void on_gone(struct watch *w, int revents)
{
        struct fault_threads *ft = w->data;
        uint64_t v;

        if (read(ft->gone_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_debug_errno(errno, "fault threads: eventfd read: %m");
        for (;;) {
                struct handover h;
                pthread_mutex_lock(&ft->lock);
                bool any = ft->ngone > 0;
                if (any)
                        h = ft->gone[--ft->ngone];
                pthread_mutex_unlock(&ft->lock);
                if (!any)
                        return;
                struct client *c = client_by_id(ft->m, h.id);
                if (c)
                        client_disconnect(c, h.why);
        }
}

int fault_threads_start(struct manager *m, unsigned n)
{
        struct fault_threads *ft = calloc(1, sizeof(*ft));
        int r;

        if (!ft)
                return -ENOMEM;
        if (n == 0) {
                long cpus = sysconf(_SC_NPROCESSORS_ONLN);
                n = cpus > 0 ? (unsigned)cpus : 1;
        }
        if (n > FAULT_THREADS_MAX)
                n = FAULT_THREADS_MAX;
        ft->m = m;
        ft->epfd = epoll_create1(EPOLL_CLOEXEC);
        ft->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        ft->gone_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        pthread_mutex_init(&ft->lock, NULL);
        m->fault_threads = ft;
        if (ft->epfd < 0 || ft->stop_fd < 0 || ft->gone_fd < 0) {
                r = -errno;
                goto fail;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = STOP_ID };
        if (epoll_ctl(ft->epfd, EPOLL_CTL_ADD, ft->stop_fd, &ev) < 0) {
                r = -errno;
                goto fail;
        }
        r = watch_start(&m->loop, &ft->w_gone, ft->gone_fd, on_gone, ft);
        if (r < 0)
                goto fail;
        ft->threads = calloc(n, sizeof(*ft->threads));
        if (!ft->threads) {
                r = -ENOMEM;
                goto fail;
        }
        for (; ft->n < n; ft->n++) {
                r = -pthread_create(&ft->threads[ft->n], NULL, thread_main, ft);
                if (r < 0)
                        goto fail;
                pthread_setname_np(ft->threads[ft->n], "hp-fault");
        }
        return 0;
fail:
        fault_threads_stop(m);
        return r;
}

void fault_threads_stop(struct manager *m)
{
        struct fault_threads *ft = m->fault_threads;
        uint64_t one = 1;

        if (!ft)
                return;
        if (ft->n && write(ft->stop_fd, &one, sizeof(one)) < 0)
                log_error_errno(errno, "fault threads: cannot stop them: %m");
        for (unsigned i = 0; i < ft->n; i++)
                pthread_join(ft->threads[i], NULL);
        m->fault_threads = NULL;
        safe_close(ft->epfd);
        safe_close(ft->stop_fd);
        safe_close(ft->gone_fd);        /* the loop is over: its watch never runs again */
        pthread_mutex_destroy(&ft->lock);
        free(ft->threads);
        free(ft->tab);
        free(ft->gone);
        free(ft);
}

int fault_threads_add(struct client *c)
{
        struct fault_threads *ft = c->m->fault_threads;
        int r = 0;

        pthread_mutex_lock(&ft->lock);
        size_t i = tab_index(ft, c->id);
        if (ft->ntab == ft->captab) {
                size_t cap = ft->captab ? ft->captab * 2 : 64;
                struct entry *v = realloc(ft->tab, cap * sizeof(*v));
                if (!v)
                        r = -ENOMEM;
                else {
                        ft->tab = v;
                        ft->captab = cap;
                }
        }
        if (r == 0) {
                memmove(&ft->tab[i + 1], &ft->tab[i], (ft->ntab - i) * sizeof(*ft->tab));
                ft->tab[i] = (struct entry){ .id = c->id, .c = c };
                ft->ntab++;
        }
        pthread_mutex_unlock(&ft->lock);
        if (r < 0)
                return r;

        struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = c->id };
        if (epoll_ctl(ft->epfd, EPOLL_CTL_ADD, c->fds->uffd, &ev) < 0) {
                r = -errno;
                fault_threads_remove(c);
                return r;
        }
        c->fault_polled = true;
        return 0;
}

void fault_threads_remove(struct client *c)
{
        struct fault_threads *ft = c->m->fault_threads;

        if (!ft)
                return;
        if (c->fault_polled) {
                (void)epoll_ctl(ft->epfd, EPOLL_CTL_DEL, c->fds->uffd, NULL);
                c->fault_polled = false;
        }
        pthread_mutex_lock(&ft->lock);
        size_t i = tab_index(ft, c->id);
        if (i < ft->ntab && ft->tab[i].id == c->id) {
                memmove(&ft->tab[i], &ft->tab[i + 1], (ft->ntab - i - 1) * sizeof(*ft->tab));
                ft->ntab--;
        }
        pthread_mutex_unlock(&ft->lock);
}

unsigned fault_threads_count(const struct manager *m)
{
        return m->fault_threads ? m->fault_threads->n : 0;
}
