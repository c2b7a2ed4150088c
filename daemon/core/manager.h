/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * manager.h: the daemon's state and the objects it owns.
 *
 * manager ── clients ── ranges (range.h) and regions (region.h)
 *         └─ promotion workers (promote.c)
 *
 * Ownership: everything here is touched by the main thread only, except the
 * promotion queue (promote.c, own lock). Workers never see a struct client:
 * a job carries copies of what it needs (dup'd fds, addresses).
 */
#ifndef HP_MANAGER_H
#define HP_MANAGER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "hugepaged-protocol.h"
#include "hugetlb.h"
#include "limits.h"
#include "loop.h"
#include "range.h"
#include "region.h"
#include "stats.h"

struct manager;

enum client_state {
        CLIENT_HELLO,   /* waiting for HP_MSG_HELLO */
        CLIENT_UFFD,    /* device fd sent, waiting for the client's uffd */
        CLIENT_READY,
        CLIENT_DEAD,    /* disconnecting: watches being stopped */
};

/* A client's pidfd and uffd, shared with queued promotion jobs. */
struct client_fds {
        int refs;               /* atomic */
        int pidfd, uffd;
        int gone;               /* atomic: the client is being dropped; jobs stop waiting for it */
        int hurry;              /* atomic: a SYNC waits; regions handed over ahead stop waiting */
        uint64_t prefilled;     /* atomic: hugetlb pages the fill threads put in (hugetlb.c) */
};

struct client_fds *client_fds_ref(struct client_fds *f);
struct client_fds *client_fds_unref(struct client_fds *f);

/* A SYNC request waiting for promotions in its span to finish. */
struct sync_wait {
        struct sync_wait *next;
        uint32_t seq;
        uint64_t start, end;
};

struct client {
        struct manager *m;
        struct client *prev, *next;
        uint64_t id;            /* unique for the daemon's lifetime */
        pid_t pid;
        uid_t uid;
        gid_t gid;
        char comm[16];
        enum client_state state;

        int sock, pidfd, uffd, maps_fd;
        struct client_fds *fds; /* owns pidfd and uffd once the handshake is done */
        struct watch w_sock, w_uffd, w_pidfd;
        unsigned watches_live;

        char exe[64];           /* basename of /proc/PID/exe, for [Program:NAME] */
        uint32_t threshold;     /* default for this client's ranges */
        uint32_t max_window;    /* largest served window, pages */
        bool dense_predict;
        bool policy_explicit;   /* set by the client or SetPolicy: a reload keeps it */

        struct sync_wait *syncs;
        unsigned nsyncs;
        unsigned unregistered;  /* regions unregistered for a native job (VMA budget) */

        struct range_set ranges;
        struct region_table regions;
        struct counters c;
        struct client_limits limits;    /* limits.c */
        struct client_hugetlb hugetlb;  /* hugetlb.c */
};

/* Resolved AllowedUsers/AllowedGroups/AdminUsers/AdminGroups (reload.c). */
struct id_list {
        uint32_t *v;
        size_t n;
};

struct manager {
        struct config cfg;      /* in force: defaults < config file < command line */
        struct config cli;      /* the command line's settings ... */
        unsigned cli_set;       /* ... and which of them it gave (CONFIG_SET_*) */
        const char *config_path;
        bool config_explicit;   /* --config given: the file must exist */
        bool config_loaded;     /* config_path was read */
        struct id_list allowed_uids, allowed_gids, admin_uids, admin_gids;
        struct loop loop;
        int listen_fd;
        int uffd_dev;           /* /dev/userfaultfd, passed to clients */
        void *zero_page;        /* HP_REGION_SIZE of zeros: UFFDIO_COPY source */
        struct watch w_listen, w_signal, w_done;
        int signal_fd;

        struct client *clients;
        unsigned nclients;
        uint64_t next_client_id;
        struct counters c;      /* totals over all clients, past and present */

        struct promote_queue *pq;
        struct hugetlb_pool *hugetlb;   /* hugetlb.c; NULL when the kernel has no 2 MiB huge pages */
        struct trace *trace;    /* in-kernel tracing (trace.c), NULL when off */

        /* D-Bus (bus-thread.c) and systemd (notify.c) */
        struct bus_thread *bus; /* NULL with --bus none */
        struct watch w_control; /* commands from the bus thread */
        struct watch w_heartbeat;
        int heartbeat_fd;
        uint64_t watchdog_usec; /* 0: no watchdog */
        uint64_t last_status_ns, last_watchdog_ns;
        bool socket_activated;  /* the listening socket came from systemd */

        struct manager_limits limits;   /* handshake deadlines, throttled clients (limits.c) */
};

/* client.c */
void client_accept(struct manager *m);
void client_disconnect(struct client *c, const char *why);
/* At exit, once the loop is gone (no watch can run): free every client. */
void client_free_all(struct manager *m);
struct client *client_by_id(struct manager *m, uint64_t id);
void client_stats(struct client *c, struct hp_stats *ret);
/* Answer request seq: REPLY with status, or ERROR with text when status < 0. */
void client_reply(struct client *c, uint32_t seq, int status, const char *text);
/* Register [rg->start, rg->end) with the client's uffd (MISSING) and record
 * it: 0, or -errno with why set and nothing left registered or recorded. */
int client_register_range(struct client *c, const struct range *rg, char *why, size_t whylen);
/* Answer the SYNC requests whose span has no promotion in flight any more. */
void client_syncs_check(struct client *c);

/* fault.c: the uffd side of a client */
void fault_uffd_ready(struct client *c);
int region_unregister(struct client *c, uint64_t start, uint64_t len);
void fault_drop_span(struct client *c, uint64_t start, uint64_t end);

/* promote.c */
int promote_queue_new(struct manager *m, unsigned workers, struct promote_queue **ret);
void promote_queue_free(struct promote_queue *q);
int promote_queue_fd(struct promote_queue *q);
/* Queue a promotion of region r; native = the region was already unregistered. */
/* Queue a region's promotion; a native job looks first at not_before_ns
 * (CLOCK_MONOTONIC; 0: at once). */
int promote_region(struct client *c, struct region *r, bool native, uint64_t not_before_ns);
void promote_drain_done(struct manager *m);
/* Drop the jobs of a client that is going away (not yet started ones). */
void promote_forget_client(struct promote_queue *q, uint64_t client_id);

/* reload.c: the config file into the running daemon (start, SIGHUP, Reload) */
int manager_load_config(struct manager *m, struct config *ret, char *error, size_t errlen);
int manager_apply_config(struct manager *m, struct config *cfg, bool startup);
int manager_reload(struct manager *m, char *error, size_t errlen);
void manager_client_policy(struct manager *m, struct client *c);
void manager_config_done(struct manager *m);

/* control.c: commands from the bus thread, client events for it */
void control_run(struct manager *m);
void control_client_event(struct client *c, bool added);

/* heartbeat.c: the main thread's periodic timer */
int heartbeat_start(struct manager *m);
void heartbeat_stop(struct manager *m);
/* Publish a statistics snapshot to the bus thread now. */
void heartbeat_publish(struct manager *m);

/* access.c */
int access_check_peer(struct manager *m, int sock, pid_t *pid, uid_t *uid, gid_t *gid,
                      int *pidfd, char *why, size_t whylen);
/* Was uffd created by the client itself (pidfd, pid)? 0, -EPERM with why set, or -errno. */
int access_check_uffd(int pidfd, pid_t pid, int uffd, char *why, size_t whylen);
/* Is the process of pidfd still alive (so its pid still names it)? 0 or -ESRCH. */
int access_pidfd_alive(int pidfd);

/* vma.c */
int vma_check_anon(int maps_fd, pid_t pid, uint64_t start, uint64_t end, char *why, size_t whylen);
/* [start, end) is private anonymous MAP_HUGETLB memory of 2 MiB pages: 0 or -errno with why. */
int vma_check_hugetlb(int maps_fd, uint64_t start, uint64_t end, char *why, size_t whylen);
/* 1 if the VMA containing addr lies inside [lo, hi), 0 if not, -errno (-ENOENT: unmapped). */
int vma_within(int maps_fd, uint64_t addr, uint64_t lo, uint64_t hi);

static inline uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
