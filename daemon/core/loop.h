/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * loop.h: a thin wrapper over io_uring multishot polls. A `struct watch`
 * names an fd and the callback to run when it is readable (model:
 * dbus-broker's DispatchFile). Owned and run by the main thread only.
 */
#ifndef HP_LOOP_H
#define HP_LOOP_H

#include <liburing.h>
#include <stdbool.h>

struct loop;
struct watch;

/* revents: poll mask, or -errno if polling failed. */
typedef void (*watch_fn)(struct watch *w, int revents);
/* Called once the watch has stopped for good (after watch_stop). */
typedef void (*watch_stopped_fn)(struct watch *w);

struct watch {
        struct loop *loop;
        int fd;
        unsigned events;        /* poll mask; 0: POLLIN */
        watch_fn fn;
        watch_stopped_fn stopped;
        void *data;
        bool armed;     /* a poll request is in the kernel */
        bool stopping;  /* watch_stop called: do not re-arm */
        bool dispatching; /* inside w->fn */
        bool deferred;  /* on the loop's deferred list */
        struct watch *next_deferred;
};

struct loop {
        struct io_uring ring;
        struct watch *deferred; /* to run again without a new poll event */
        struct watch *running;  /* deferred ones being run now */
        bool exit;
        int exit_code;
};

int loop_init(struct loop *l, unsigned entries);
void loop_deinit(struct loop *l);
/* Start polling w->fd for POLLIN (w->events, if set: watch_start_events). */
int watch_start(struct loop *l, struct watch *w, int fd, watch_fn fn, void *data);
/* The same for another poll mask (POLLPRI: a PSI trigger). */
int watch_start_events(struct loop *l, struct watch *w, int fd, unsigned events, watch_fn fn, void *data);
/*
 * Stop polling. If a poll was armed, `stopped` runs later from the loop
 * (the fd must stay open until then); otherwise it runs before this returns.
 */
void watch_stop(struct watch *w, watch_stopped_fn stopped);
/*
 * Run w->fn again soon without waiting for a new poll event. Multishot polls
 * report edges, not levels: a callback that stops before draining its fd
 * (fairness between clients) must defer itself or the rest waits forever.
 */
void watch_defer(struct watch *w);
/* Run until loop_exit(). Returns exit code. */
int loop_run(struct loop *l);
void loop_exit(struct loop *l, int code);

#endif
