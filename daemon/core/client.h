/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client.h: one connected process and what it owns: its socket, its fds
 * (pidfd and userfaultfd, shared with worker threads through struct
 * client_fds), its ranges (range.h) and region records (region.h), its
 * policy (policy.h), its counters and each backend's state for it.
 *
 * Threads: a struct client is touched with its lock held, by one thread at
 * a time: a fault thread serving its uffd (fault-threads.h), or the main
 * thread (its requests, the results of its jobs, the heartbeat, snapshots,
 * policy updates, reload, fork inherit, disconnect). The lock is recursive
 * (a request may disconnect the client, which locks it again). Only the
 * main thread links, unlinks and looks up clients in the manager's list,
 * and only it writes `state`; the fields only the main thread touches (the
 * socket and its watches, limits, syncs) need no lock. Lock order: a
 * client's lock, then leaf locks (a workq's, the hugetlb pool's, the fault
 * threads' table); a fault thread holds one client's lock at a time, and
 * only the main thread may hold several (fork inherit, reload, totals).
 * Memory: reference counted (client_ref); the manager's list holds one
 * reference, and a fault thread takes one under the table's lock before it
 * locks the client, so a client is freed once no thread can reach it.
 * Worker threads (promotion workers, hugetlb pool and fill threads) hold a
 * client id and a reference to its client_fds, never the client; what they
 * write there is atomic and documented on the field.
 */
#ifndef HP_CLIENT_H
#define HP_CLIENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"
#include "hugepaged-protocol.h"
#include "limits.h"
#include "loop.h"
#include "memcg.h"
#include "policy.h"
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

/*
 * The client's pidfd and uffd: their only owner, reference counted, so that
 * a job still running for a client that is gone keeps valid fds. The last
 * unref closes the uffd: the kernel then unregisters every range and blocked
 * faults proceed as ordinary kernel faults.
 */
struct client_fds {
        int refs;               /* atomic */
        int pidfd;              /* from the hello on */
        int uffd;               /* from the uffd message on; -1 before */
        int gone;               /* atomic: the client is being dropped; jobs stop waiting for it */
        int hurry;              /* atomic: a SYNC waits; regions handed over ahead stop waiting */
        uint64_t worker_pages;  /* atomic: 2 MiB pages worker threads put in, counted before their wake */
};

struct client_fds *client_fds_new(int pidfd);
struct client_fds *client_fds_ref(struct client_fds *f);
struct client_fds *client_fds_unref(struct client_fds *f);

/* A SYNC request waiting for promotions in its span to finish. */
struct sync_wait {
        struct sync_wait *next;
        uint32_t seq;
        uint64_t start, end;
};

struct client {
        pthread_mutex_t lock;   /* recursive; see the top of this file */
        int refs;               /* atomic: the manager's list, and threads holding it now */
        struct manager *m;
        struct client *prev, *next;
        uint64_t id;            /* unique for the daemon's lifetime */
        pid_t pid;
        uid_t uid;
        gid_t gid;
        char comm[16];
        char exe[64];           /* basename of /proc/PID/exe, for [Program:NAME] */
        enum client_state state;

        int sock, maps_fd;
        struct client_fds *fds; /* from the hello on: owns the pidfd and the uffd */
        struct watch w_sock, w_pidfd;
        unsigned watches_live;
        bool fault_polled;      /* its uffd is in the fault threads' epoll set */

        struct policy policy;   /* in force (policy.h: config < [Program:] < client < D-Bus) */
        struct policy_layers layers;    /* where it came from, to recompute on reload */

        struct sync_wait *syncs;
        unsigned nsyncs;
        unsigned unregistered;  /* regions handed to the kernel now (the VMA budget, policy.h) */
        struct policy_density density;  /* its anonymous ranges' together (policy_learned_threshold) */

        struct range_set ranges;
        struct region_table regions;
        struct counters c;      /* this client's; the daemon's totals add them up (client_totals) */
        struct memcg memcg;     /* its memory cgroup: headroom before promotions */
        uint64_t bloat_pages;   /* zero-filled pages of its huge regions now (recounted on each snapshot) */
        struct client_limits limits;    /* limits.c */
        void *backend[HP_RANGE_KINDS];  /* each backend's own state for this client, or NULL */
};

void client_accept(struct manager *m);
struct client *client_ref(struct client *c);
/* The last reference frees the struct (client_free has torn it down). */
void client_unref(struct client *c);
/* Main thread: a reference and the lock, for the time it touches c; then
 * unlock and drop the reference (c may be freed by then). */
void client_lock(struct client *c);
void client_unlock(struct client *c);
void client_disconnect(struct client *c, const char *why);
/* At exit, once the loop is gone (no watch can run): free every client. */
void client_free_all(struct manager *m);
struct client *client_by_id(struct manager *m, uint64_t id);
/* The live client of a pid (READY), or NULL. */
struct client *client_by_pid(struct manager *m, pid_t pid);
void client_stats(struct client *c, struct hp_stats *ret);
/* The daemon's counters: those of clients gone plus those of live ones. */
void client_totals(struct manager *m, struct counters *ret);
/* Answer request seq: REPLY with status, or ERROR with text when status < 0. */
void client_reply(struct client *c, uint32_t seq, int status, const char *text);
/* Answer request seq with a REPLY (status 0) carrying fd (SCM_RIGHTS; the
 * caller keeps its own fd). */
void client_reply_fd(struct client *c, uint32_t seq, int fd);
/* Register [rg->start, rg->end) with the client's uffd in `mode`
 * (UFFDIO_REGISTER_MODE_*), needing the ioctls in `ioctls` (a mask of
 * 1 << _UFFDIO_*), and record it: 0, or -errno with why set and nothing
 * left registered or recorded. */
int client_register_range(struct client *c, const struct range *rg, uint64_t mode, uint64_t ioctls, char *why,
                          size_t whylen);
/* The bloat gauges (c->bloat_pages, m->bloat_pages): a HUGE region's bloat
 * counts while it is huge and mapped; call _add once it is, _drop before it
 * stops being either. */
void client_bloat_add(struct client *c, struct region *r);
void client_bloat_drop(struct client *c, struct region *r);
/* Answer the SYNC requests whose span has no promotion in flight any more. */
void client_syncs_check(struct client *c);
/* The policy of c from its layers and the config in force (reload, SetPolicy). */
void client_policy_update(struct client *c);

#endif
