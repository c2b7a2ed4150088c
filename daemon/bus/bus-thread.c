/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-thread.c: the thread that owns the D-Bus connection, its sd-event
 * loop, and the queues between it and the main thread (see bus-thread.h).
 *
 * Connecting happens here, never on the main thread: when no bus is
 * reachable the daemon says so once, keeps serving faults, and retries
 * quietly every few seconds; a lost connection is re-established the same
 * way. Must never touch the manager, clients or regions.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus-thread.h"
#include "bus.h"
#include "log.h"
#include "util.h"

#define RETRY_USEC (5ull * 1000000ull)

struct bus_thread {
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        enum bus_kind kind;
        char *address;
        int bus_efd;    /* wakes the bus thread */
        int cmd_efd;    /* wakes the main thread: commands queued */

        /* under lock */
        bool stop;
        struct snapshot *snap;
        struct bus_event *events, **events_tail;
        struct bus_command *commands, **commands_tail;
        struct bus_command *results, **results_tail;

        /* main thread only: events not yet published with a snapshot */
        struct bus_event *pending, **pending_tail;

        /* bus thread only */
        sd_event *event;
        sd_bus *bus;
        sd_event_source *retry;
        bool warned, connected_once;
        struct snapshot *announced;     /* the snapshot PropertiesChanged last compared to */
};

static const char *bus_description(const struct bus_thread *bt)
{
        switch (bt->kind) {
        case BUS_SYSTEM:
                return "the system bus";
        case BUS_SESSION:
                return "the session bus";
        default:
                return bt->address;
        }
}

static void wake(int efd)
{
        uint64_t one = 1;
        if (write(efd, &one, sizeof(one)) < 0) {
                /* the counter cannot overflow at these rates */
        }
}

static void drain(int efd)
{
        uint64_t v;
        while (read(efd, &v, sizeof(v)) > 0)
                ;
}

/* ---- bus thread ---------------------------------------------------------- */

static int schedule_retry(struct bus_thread *bt);

static int bus_connect(struct bus_thread *bt)
{
        sd_bus *bus = NULL;
        int r;

        switch (bt->kind) {
        case BUS_SYSTEM:
                r = sd_bus_open_system_with_description(&bus, "hugepaged");
                break;
        case BUS_SESSION:
                r = sd_bus_open_user_with_description(&bus, "hugepaged");
                break;
        default:
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, bt->address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, 1);
                if (r >= 0)
                        r = sd_bus_start(bus);
        }
        if (r >= 0)
                r = bus_add_objects(bus, bt);
        if (r >= 0) {
                r = sd_bus_request_name(bus, BUS_NAME, 0);
                if (r == -EEXIST)
                        log_warning("%s is already owned on %s: is another hugepaged running?", BUS_NAME,
                                    bus_description(bt));
        }
        if (r >= 0)
                r = sd_bus_attach_event(bus, bt->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                sd_bus_flush_close_unref(bus);
                return r;
        }
        bt->bus = bus;
        return 0;
}

static void try_connect(struct bus_thread *bt)
{
        int r = bus_connect(bt);
        if (r < 0) {
                if (!bt->warned)
                        log_warning_errno(r, "cannot publish %s on %s: %m; serving faults without D-Bus, "
                                          "retrying quietly", BUS_NAME, bus_description(bt));
                bt->warned = true;
                schedule_retry(bt);
                return;
        }
        if (bt->warned || !bt->connected_once)
                log_info("published %s on %s", BUS_NAME, bus_description(bt));
        bt->warned = false;
        bt->connected_once = true;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct bus_thread *bt = userdata;
        bt->retry = sd_event_source_unref(bt->retry);
        if (!bt->bus)
                try_connect(bt);
        return 0;
}

static int schedule_retry(struct bus_thread *bt)
{
        if (bt->retry)
                return 0;
        return sd_event_add_time_relative(bt->event, &bt->retry, CLOCK_MONOTONIC, RETRY_USEC, 0, on_retry, bt);
}

/* After each loop iteration: notice a connection the bus closed. */
static int on_post(sd_event_source *s, void *userdata)
{
        struct bus_thread *bt = userdata;
        if (bt->bus && sd_bus_is_open(bt->bus) <= 0) {
                log_warning("lost the connection to %s; reconnecting", bus_description(bt));
                bt->warned = true;
                sd_bus_detach_event(bt->bus);
                bt->bus = sd_bus_flush_close_unref(bt->bus);
                schedule_retry(bt);
        }
        return 0;
}

static int on_wakeup(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct bus_thread *bt = userdata;
        struct bus_event *events;
        struct bus_command *results;
        bool stop;

        drain(fd);
        pthread_mutex_lock(&bt->lock);
        stop = bt->stop;
        events = bt->events;
        bt->events = NULL;
        bt->events_tail = &bt->events;
        results = bt->results;
        bt->results = NULL;
        bt->results_tail = &bt->results;
        struct snapshot *snap = bt->snap != bt->announced ? snapshot_ref(bt->snap) : NULL;
        pthread_mutex_unlock(&bt->lock);

        /* Once per snapshot, only what changed since the one before. */
        if (snap) {
                if (bt->bus && bt->announced)
                        (void)bus_emit_changes(bt->bus, bt->announced, snap);
                snapshot_unref(bt->announced);
                bt->announced = snap;
        }

        while (events) {
                struct bus_event *e = events;
                events = e->next;
                if (bt->bus)
                        (void)bus_emit_client_event(bt->bus, e);
                free(e);
        }
        while (results) {
                struct bus_command *c = results;
                results = c->next;
                (void)bus_reply_command(c);
                bus_command_free(c);
        }
        if (stop)
                return sd_event_exit(bt->event, 0);
        return 0;
}

static void *bus_main(void *arg)
{
        struct bus_thread *bt = arg;
        int r;

        r = sd_event_new(&bt->event);
        if (r >= 0)
                r = sd_event_add_io(bt->event, NULL, bt->bus_efd, EPOLLIN, on_wakeup, bt);
        if (r >= 0)
                r = sd_event_add_post(bt->event, NULL, on_post, bt);
        if (r < 0) {
                log_error_errno(r, "cannot set up the D-Bus event loop: %m; D-Bus is off");
                return NULL;
        }
        try_connect(bt);
        r = sd_event_loop(bt->event);
        if (r < 0)
                log_error_errno(r, "D-Bus event loop failed: %m; D-Bus is off");
        if (bt->bus) {
                sd_bus_detach_event(bt->bus);
                bt->bus = sd_bus_flush_close_unref(bt->bus);
        }
        bt->retry = sd_event_source_unref(bt->retry);
        bt->event = sd_event_unref(bt->event);
        bt->announced = snapshot_unref(bt->announced);
        return NULL;
}

struct snapshot *bus_thread_snapshot(struct bus_thread *bt)
{
        pthread_mutex_lock(&bt->lock);
        struct snapshot *s = snapshot_ref(bt->snap);
        pthread_mutex_unlock(&bt->lock);
        return s;
}

int bus_thread_submit(struct bus_thread *bt, struct bus_command *cmd)
{
        cmd->next = NULL;
        pthread_mutex_lock(&bt->lock);
        bool stopping = bt->stop;
        if (!stopping) {
                *bt->commands_tail = cmd;
                bt->commands_tail = &cmd->next;
        }
        pthread_mutex_unlock(&bt->lock);
        if (stopping)
                return -ESHUTDOWN;
        wake(bt->cmd_efd);
        return 0;
}

void bus_command_free(struct bus_command *cmd)
{
        if (!cmd)
                return;
        sd_bus_message_unref(cmd->message);
        free(cmd->gids);
        free(cmd);
}

/* ---- main thread ----------------------------------------------------------- */

/*
 * A D-Bus address without its guid= keys: a bus that restarts gets a new
 * guid, and sd-bus refuses a server whose guid differs from the address's.
 */
static char *address_without_guid(const char *address)
{
        char *out = malloc(strlen(address) + 1), *o = out;
        if (!out)
                return NULL;
        /* address;address...: each is transport:key=value,key=value... */
        for (const char *p = address; *p;) {
                size_t n = strcspn(p, ":;");
                memcpy(o, p, n);        /* the transport */
                o += n;
                p += n;
                if (*p == ':') {
                        *o++ = *p++;
                        bool first = true;
                        while (*p && *p != ';') {
                                size_t k = strcspn(p, ",;");
                                if (strncmp(p, "guid=", 5) != 0) {
                                        if (!first)
                                                *o++ = ',';
                                        memcpy(o, p, k);
                                        o += k;
                                        first = false;
                                }
                                p += k;
                                if (*p == ',')
                                        p++;
                        }
                }
                if (*p == ';')
                        *o++ = *p++;
        }
        *o = '\0';
        return out;
}

int bus_thread_start(enum bus_kind kind, const char *address, struct bus_thread **ret)
{
        struct bus_thread *bt = calloc(1, sizeof(*bt));
        int r;

        if (!bt)
                return -ENOMEM;
        pthread_mutex_init(&bt->lock, NULL);
        bt->kind = kind;
        bt->events_tail = &bt->events;
        bt->commands_tail = &bt->commands;
        bt->results_tail = &bt->results;
        bt->pending_tail = &bt->pending;
        bt->bus_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        bt->cmd_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        bt->address = address ? address_without_guid(address) : NULL;
        if (bt->bus_efd < 0 || bt->cmd_efd < 0 || (address && !bt->address)) {
                r = bt->bus_efd < 0 || bt->cmd_efd < 0 ? -errno : -ENOMEM;
                bus_thread_stop(bt);
                return r;
        }
        r = -pthread_create(&bt->thread, NULL, bus_main, bt);
        if (r < 0) {
                bus_thread_stop(bt);
                return r;
        }
        pthread_setname_np(bt->thread, "hp-bus");
        bt->started = true;
        *ret = bt;
        return 0;
}

void bus_thread_stop(struct bus_thread *bt)
{
        if (!bt)
                return;
        if (bt->started) {
                pthread_mutex_lock(&bt->lock);
                bt->stop = true;
                pthread_mutex_unlock(&bt->lock);
                wake(bt->bus_efd);
                pthread_join(bt->thread, NULL);
        }
        /* The thread is gone: what it left in the queues is ours to free. */
        for (struct bus_command *lists[] = { bt->commands, bt->results }, **l = lists; l < lists + 2; l++)
                while (*l) {
                        struct bus_command *c = *l;
                        *l = c->next;
                        bus_command_free(c);
                }
        for (struct bus_event *lists[] = { bt->events, bt->pending }, **l = lists; l < lists + 2; l++)
                while (*l) {
                        struct bus_event *e = *l;
                        *l = e->next;
                        free(e);
                }
        snapshot_unref(bt->snap);
        safe_close(bt->bus_efd);
        safe_close(bt->cmd_efd);
        free(bt->address);
        pthread_mutex_destroy(&bt->lock);
        free(bt);
}

int bus_thread_command_fd(struct bus_thread *bt)
{
        return bt->cmd_efd;
}

void bus_thread_client_event(struct bus_thread *bt, bool added, pid_t pid, uid_t uid, const char *comm)
{
        struct bus_event *e = calloc(1, sizeof(*e));
        if (!e)
                return;         /* a signal lost to memory pressure; the objects stay right */
        e->added = added;
        e->pid = pid;
        e->uid = uid;
        snprintf(e->comm, sizeof(e->comm), "%s", comm);
        *bt->pending_tail = e;
        bt->pending_tail = &e->next;
}

bool bus_thread_events_pending(struct bus_thread *bt)
{
        return bt->pending != NULL;
}

void bus_thread_publish(struct bus_thread *bt, struct snapshot *s)
{
        struct snapshot *old;

        pthread_mutex_lock(&bt->lock);
        old = bt->snap;
        bt->snap = s;
        if (bt->pending) {
                *bt->events_tail = bt->pending;
                bt->events_tail = bt->pending_tail;
                bt->pending = NULL;
                bt->pending_tail = &bt->pending;
        }
        pthread_mutex_unlock(&bt->lock);
        snapshot_unref(old);
        wake(bt->bus_efd);
}

struct bus_command *bus_thread_take_commands(struct bus_thread *bt)
{
        struct bus_command *list;

        drain(bt->cmd_efd);
        pthread_mutex_lock(&bt->lock);
        list = bt->commands;
        bt->commands = NULL;
        bt->commands_tail = &bt->commands;
        pthread_mutex_unlock(&bt->lock);
        return list;
}

void bus_thread_complete(struct bus_thread *bt, struct bus_command *cmd)
{
        cmd->next = NULL;
        pthread_mutex_lock(&bt->lock);
        *bt->results_tail = cmd;
        bt->results_tail = &cmd->next;
        pthread_mutex_unlock(&bt->lock);
        wake(bt->bus_efd);
}
