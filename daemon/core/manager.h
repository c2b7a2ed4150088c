/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * manager.h: the daemon's state: the configuration in force, the listening
 * socket and the event loop, the clients (client.h), the promotion workers
 * (promote.h), each backend's global state, and the D-Bus and systemd
 * plumbing.
 *
 * Threads (daemon/README.md has the whole picture):
 *  - main: the io_uring loop (loop.h): accepts, requests, results of jobs,
 *    commands from the bus thread, the heartbeat. It alone touches struct
 *    manager, but for what the fault threads read (below), and the list of
 *    clients; it touches a client with the client's lock held (client.h).
 *  - hp-fault (FaultThreads=): the clients' faults and uffd events
 *    (fault-threads.h), each with the client's lock held. Of the manager
 *    they read `cfg` (written only with every client locked: reload),
 *    `zero_page`, `pq`, `backend[]` and `fault_threads` (set before they
 *    start, cleared after they stop), and they update `bloat_pages` and
 *    `pressure.level` only atomically.
 *  - hp-promote (Workers=): promotion jobs (promote.c on a workq).
 *  - hp-hugetlb-pool, hp-hugetlb-fill (x2): the hugetlb backend's pool
 *    resizing and fill-ahead copies (backend/hugetlb-pool.c, on workqs).
 *  - hp-bus: sd-bus (bus-thread.c); it sees only snapshots (snapshot.h).
 * Worker threads hold client ids and client_fds references, never a client.
 */
#ifndef HP_MANAGER_H
#define HP_MANAGER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "hugepaged-protocol.h"
#include "limits.h"
#include "loop.h"
#include "pressure.h"
#include "stats.h"

struct client;
struct fault_threads;
struct workq;

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
        struct watch w_listen, w_signal;
        int signal_fd;

        struct client *clients;
        unsigned nclients;
        uint64_t next_client_id;
        struct counters retired;        /* of the clients gone; totals add the live ones (client_totals) */
        uint64_t bloat_pages;           /* atomic: of every live client (their bloat_pages, recounted on snapshots) */
        struct pressure pressure;       /* the host's memory pressure (pressure.c) */

        struct fault_threads *fault_threads;    /* the fault threads (fault-threads.h) */
        struct workq *pq;               /* promotion workers (promote.c) */
        void *backend[HP_RANGE_KINDS];  /* each backend's global state, or NULL (backend off) */
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

/* reload.c: the config file into the running daemon (start, SIGHUP, Reload) */
int manager_load_config(struct manager *m, struct config *ret, char *error, size_t errlen);
int manager_apply_config(struct manager *m, struct config *cfg, bool startup);
int manager_reload(struct manager *m, char *error, size_t errlen);
void manager_config_done(struct manager *m);

/* Any thread: the daemon's bloat gauge. */
static inline uint64_t manager_bloat_pages(const struct manager *m)
{
        return __atomic_load_n(&m->bloat_pages, __ATOMIC_RELAXED);
}

static inline uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
