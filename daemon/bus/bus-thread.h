/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-thread.h: the D-Bus side of the daemon runs in a thread of its own
 * with its own sd-event loop, so that nothing on the bus (a slow peer, a
 * reconnect, a big introspection) can delay fault handling.
 *
 * The two threads meet only here, through three queues under one mutex:
 *   main -> bus: statistics snapshots (snapshot.h) and client connect/leave
 *                events, published by heartbeat.c;
 *   bus -> main: commands that change state (SetPolicy, Reload), read by
 *                control.c when the command eventfd (watched by the io_uring
 *                loop) fires;
 *   main -> bus: the commands again, with their result, to be answered.
 * The main thread never calls into sd-bus.
 */
#ifndef HP_BUS_THREAD_H
#define HP_BUS_THREAD_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "snapshot.h"

enum bus_kind {
        BUS_NONE,
        BUS_SYSTEM,
        BUS_SESSION,
        BUS_ADDRESS,    /* an explicit address (--bus-address) */
};

enum bus_command_type {
        BUS_COMMAND_SET_POLICY,
        BUS_COMMAND_RELOAD,
};

/* A state-changing request from a bus caller, executed on the main thread. */
struct bus_command {
        struct bus_command *next;
        enum bus_command_type type;

        /* The caller, as the bus reported it. */
        uid_t euid;
        gid_t egid;
        gid_t *gids;            /* supplementary groups (may be unknown: 0) */
        int n_gids;

        /* SetPolicy: 0 (or -1 for dense_predict) = leave as is */
        pid_t pid;
        uint32_t threshold;
        uint32_t max_window;
        int dense_predict;

        /* Result, filled in by the main thread: error_name NULL = success. */
        const char *error_name;
        char error_message[512];

        void *message;          /* the sd_bus_message to answer; bus thread only */
};

#define BUS_ERROR_ACCESS_DENIED  "org.hugepaged1.Error.AccessDenied"
#define BUS_ERROR_NO_SUCH_CLIENT "org.hugepaged1.Error.NoSuchClient"
#define BUS_ERROR_INVALID_POLICY "org.hugepaged1.Error.InvalidPolicy"
#define BUS_ERROR_CONFIG_INVALID "org.hugepaged1.Error.ConfigInvalid"
#define BUS_ERROR_FAILED         "org.hugepaged1.Error.Failed"

struct bus_event {
        struct bus_event *next;
        bool added;
        pid_t pid;
        uid_t uid;
        char comm[16];
};

struct bus_thread;

#if HAVE_SDBUS
/* Main thread. */
int bus_thread_start(enum bus_kind kind, const char *address, struct bus_thread **ret);
void bus_thread_stop(struct bus_thread *bt);
int bus_thread_command_fd(struct bus_thread *bt);
/* Takes over s; the queued events are handed over with it. */
void bus_thread_publish(struct bus_thread *bt, struct snapshot *s);
void bus_thread_client_event(struct bus_thread *bt, bool added, pid_t pid, uid_t uid, const char *comm);
bool bus_thread_events_pending(struct bus_thread *bt);
struct bus_command *bus_thread_take_commands(struct bus_thread *bt);
void bus_thread_complete(struct bus_thread *bt, struct bus_command *cmd);
#else
static inline int bus_thread_start(enum bus_kind kind, const char *address, struct bus_thread **ret)
{
        return -EOPNOTSUPP;
}
static inline void bus_thread_stop(struct bus_thread *bt) {}
static inline int bus_thread_command_fd(struct bus_thread *bt) { return -1; }
static inline void bus_thread_publish(struct bus_thread *bt, struct snapshot *s) { snapshot_unref(s); }
static inline void bus_thread_client_event(struct bus_thread *bt, bool added, pid_t pid, uid_t uid,
                                           const char *comm) {}
static inline bool bus_thread_events_pending(struct bus_thread *bt) { return false; }
static inline struct bus_command *bus_thread_take_commands(struct bus_thread *bt) { return NULL; }
static inline void bus_thread_complete(struct bus_thread *bt, struct bus_command *cmd) {}
#endif

/* Bus thread (bus.c). */
struct snapshot *bus_thread_snapshot(struct bus_thread *bt);
int bus_thread_submit(struct bus_thread *bt, struct bus_command *cmd);
void bus_command_free(struct bus_command *cmd);

#endif
