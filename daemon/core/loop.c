/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * loop.c: the io_uring event loop. Every readiness source of the daemon
 * (listening socket, client sockets, uffds, pidfds, worker eventfd, signals)
 * is a multishot poll here. Never blocks except in io_uring_wait_cqe.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "log.h"
#include "loop.h"

#define UD_IGNORE 0ull  /* user_data of cancel requests: their CQE is dropped */

static struct io_uring_sqe *get_sqe(struct loop *l)
{
        struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
        if (!sqe) {
                io_uring_submit(&l->ring);
                sqe = io_uring_get_sqe(&l->ring);
        }
        return sqe;
}

int loop_init(struct loop *l, unsigned entries)
{
        struct io_uring_params p = { .flags = IORING_SETUP_CLAMP };
        memset(l, 0, sizeof(*l));
        p.cq_entries = entries * 4;
        p.flags |= IORING_SETUP_CQSIZE;
        int r = io_uring_queue_init_params(entries, &l->ring, &p);
        if (r < 0)
                return log_error_errno(r, "io_uring setup: %m");
        return 0;
}

void loop_deinit(struct loop *l)
{
        io_uring_queue_exit(&l->ring);
}

static int arm(struct watch *w)
{
        struct io_uring_sqe *sqe = get_sqe(w->loop);
        if (!sqe)
                return -EBUSY;
        io_uring_prep_poll_multishot(sqe, w->fd, w->events ? w->events : POLLIN);
        io_uring_sqe_set_data(sqe, w);
        w->armed = true;
        return 0;
}

int watch_start_events(struct loop *l, struct watch *w, int fd, unsigned events, watch_fn fn, void *data)
{
        w->events = events;
        return watch_start(l, w, fd, fn, data);
}

int watch_start(struct loop *l, struct watch *w, int fd, watch_fn fn, void *data)
{
        w->loop = l;
        w->fd = fd;
        w->fn = fn;
        w->data = data;
        w->stopping = false;
        w->stopped = NULL;
        w->deferred = false;
        return arm(w);
}

static void unlink_deferred(struct watch **head, struct watch *w)
{
        for (struct watch **p = head; *p; p = &(*p)->next_deferred)
                if (*p == w) {
                        *p = w->next_deferred;
                        return;
                }
}

void watch_stop(struct watch *w, watch_stopped_fn stopped)
{
        if (!w->loop || w->stopping)
                return;
        w->stopping = true;
        w->stopped = stopped;
        if (w->deferred) {
                /* its owner may be freed once the poll ends: unlink it now */
                unlink_deferred(&w->loop->deferred, w);
                unlink_deferred(&w->loop->running, w);
                w->deferred = false;
        }
        if (!w->armed) {
                if (w->dispatching)
                        return;         /* complete() calls `stopped` after the callback */
                if (stopped)
                        stopped(w);
                return;
        }
        /* ASYNC_CANCEL, not POLL_REMOVE: a poll remove that races with the
         * poll's own wakeup fails -EALREADY and leaves a multishot poll
         * armed for good (a client exiting while it is dropped: its pidfd
         * fires); a cancel marks the poll and always ends it. */
        struct io_uring_sqe *sqe = get_sqe(w->loop);
        if (sqe) {
                io_uring_prep_cancel64(sqe, (__u64)(uintptr_t)w, 0);
                io_uring_sqe_set_data64(sqe, UD_IGNORE);
        }
}

void watch_defer(struct watch *w)
{
        if (w->deferred || w->stopping)
                return;
        w->deferred = true;
        w->next_deferred = w->loop->deferred;
        w->loop->deferred = w;
}

/* Run the deferred callbacks queued before this call (new ones wait a turn). */
static void run_deferred(struct loop *l)
{
        l->running = l->deferred;
        l->deferred = NULL;
        while (l->running) {
                struct watch *w = l->running;
                l->running = w->next_deferred;
                w->deferred = false;
                w->dispatching = true;
                w->fn(w, POLLIN);
                w->dispatching = false;
                if (w->stopping && !w->armed && w->stopped)
                        w->stopped(w);  /* may free w */
        }
}

void loop_exit(struct loop *l, int code)
{
        l->exit = true;
        l->exit_code = code;
}

static void complete(struct watch *w, struct io_uring_cqe *cqe)
{
        int res = cqe->res;
        bool more = cqe->flags & IORING_CQE_F_MORE;

        if (!more)
                w->armed = false;
        if (!w->stopping && res != -ECANCELED) {
                w->dispatching = true;
                w->fn(w, res);
                w->dispatching = false;
        }
        if (w->armed)
                return;
        if (w->stopping) {
                if (w->stopped)
                        w->stopped(w);  /* may free w */
                return;
        }
        if (res < 0 && res != -ECANCELED) {
                log_error_errno(res, "poll on fd %d failed: %m", w->fd);
                return;
        }
        arm(w);         /* multishot ended (e.g. CQ overflow): re-arm */
}

int loop_run(struct loop *l)
{
        while (!l->exit) {
                struct io_uring_cqe *cqe;
                /* With deferred work pending, only collect what is ready. */
                int r = l->deferred ? io_uring_submit(&l->ring) : io_uring_submit_and_wait(&l->ring, 1);
                if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN)
                        return log_error_errno(r, "io_uring wait: %m");
                unsigned head, n = 0;
                io_uring_for_each_cqe(&l->ring, head, cqe) {
                        n++;
                        struct watch *w = io_uring_cqe_get_data(cqe);
                        if (w)
                                complete(w, cqe);
                }
                io_uring_cq_advance(&l->ring, n);
                run_deferred(l);
        }
        return l->exit_code;
}
