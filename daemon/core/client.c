/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client.c: one connected process: the handshake, the request protocol and
 * the client's lifetime. Every packet a client sends is checked
 * completely (proto.c) before anything acts on it; a malformed message gets
 * an error reply and the connection stays up (a client that breaks the
 * handshake is disconnected). Limits on connections per user, handshake
 * time and request rate are in limits.c. Runs on the main thread, with the
 * client's lock held (client.h); never blocks on a client (sockets are
 * non-blocking, a client that does not read its replies is dropped).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access.h"
#include "backend.h"
#include "client.h"
#include "compat.h"
#include "control.h"
#include "coverage.h"
#include "fault-threads.h"
#include "fault.h"
#include "fork.h"
#include "log.h"
#include "manager.h"
#include "promote.h"
#include "proto.h"
#include "trace.h"
#include "util.h"

#define REQUESTS_PER_WAKEUP 32  /* fairness between clients */

struct client *client_by_id(struct manager *m, uint64_t id)
{
        for (struct client *c = m->clients; c; c = c->next)
                if (c->id == id)
                        return c;
        return NULL;
}

struct client *client_by_pid(struct manager *m, pid_t pid)
{
        for (struct client *c = m->clients; c; c = c->next)
                if (c->pid == pid && c->state == CLIENT_READY)
                        return c;
        return NULL;
}

struct client *client_ref(struct client *c)
{
        __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
        return c;
}

void client_unref(struct client *c)
{
        if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) {
                pthread_mutex_destroy(&c->lock);
                free(c);
        }
}

void client_lock(struct client *c)
{
        client_ref(c);
        pthread_mutex_lock(&c->lock);
}

void client_unlock(struct client *c)
{
        pthread_mutex_unlock(&c->lock);
        client_unref(c);
}

/* *p -= min(v, *p), atomically: the daemon's bloat gauge. */
static void gauge_sub(uint64_t *p, uint64_t v)
{
        uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
        while (!__atomic_compare_exchange_n(p, &cur, cur - (v < cur ? v : cur), false, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
                ;
}

struct client_fds *client_fds_new(int pidfd)
{
        struct client_fds *f = calloc(1, sizeof(*f));
        if (f)
                *f = (struct client_fds){ .refs = 1, .pidfd = pidfd, .uffd = -1 };
        return f;
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

/* A client sends one request at a time and reads each reply: one whose
 * socket is full has stopped reading, and is dropped rather than waited for. */
static int client_send(struct client *c, const void *buf, size_t len, int fd)
{
        int r = hp_send_fd(c->sock, buf, len, fd);
        if (r == -EAGAIN)
                client_disconnect(c, "does not read its replies");
        else if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                log_debug_errno(r, "client %d: send: %m", c->pid);
        return r;
}

static void send_reply(struct client *c, const struct hp_header *req, int status)
{
        struct hp_header h;
        hp_header_init(&h, HP_MSG_REPLY, sizeof(h), req ? req->seq : 0, status);
        (void)client_send(c, &h, sizeof(h), -1);
}

static void send_error(struct client *c, const struct hp_header *req, int status, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void send_error(struct client *c, const struct hp_header *req, int status, const char *fmt, ...)
{
        struct hp_error e = { 0 };
        va_list ap;

        hp_header_init(&e.hdr, HP_MSG_ERROR, sizeof(e), req ? req->seq : 0, status);
        va_start(ap, fmt);
        vsnprintf(e.text, sizeof(e.text), fmt, ap);
        va_end(ap);
        log_debug("client %d: error %d: %s", c->pid, status, e.text);
        (void)client_send(c, &e, sizeof(e), -1);
}

void client_reply_fd(struct client *c, uint32_t seq, int fd)
{
        struct hp_header h;
        hp_header_init(&h, HP_MSG_REPLY, sizeof(h), seq, 0);
        (void)client_send(c, &h, sizeof(h), fd);
}

void client_reply(struct client *c, uint32_t seq, int status, const char *text)
{
        struct hp_header req = { .seq = seq };
        if (status < 0 && text)
                send_error(c, &req, status, "%s", text);
        else
                send_reply(c, &req, status);
}

static void client_free(struct client *c)
{
        struct manager *m = c->m;

        /* a fault thread serving it finishes its batch first */
        pthread_mutex_lock(&c->lock);
        fault_threads_remove(c);
        while (c->syncs) {
                struct sync_wait *w = c->syncs;
                c->syncs = w->next;
                free(w);
        }
        if (c->prev)
                c->prev->next = c->next;
        else
                m->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        m->nclients--;
        counters_add(&m->retired, &c->c);      /* the totals keep what it did */
        gauge_sub(&m->bloat_pages, c->bloat_pages);
        backends_client_gone(m, c);             /* e.g. its hugetlb pages go back to the pool */
        /* Closing the last reference to the uffd unregisters every range:
         * blocked faults retry as ordinary kernel faults. */
        client_fds_unref(c->fds);
        safe_close(c->sock);
        safe_close(c->maps_fd);
        memcg_close(&c->memcg);
        range_set_deinit(&c->ranges);
        region_table_deinit(&c->regions);
        c->fds = NULL;
        pthread_mutex_unlock(&c->lock);
        client_unref(c);        /* the list's */
}

void client_bloat_add(struct client *c, struct region *r)
{
        if (r->state != REGION_HUGE)
                return;
        c->bloat_pages += r->bloat;
        __atomic_add_fetch(&c->m->bloat_pages, r->bloat, __ATOMIC_RELAXED);
}

void client_bloat_drop(struct client *c, struct region *r)
{
        if (r->state != REGION_HUGE)
                return;
        uint64_t b = r->bloat;
        c->bloat_pages -= b < c->bloat_pages ? b : c->bloat_pages;
        gauge_sub(&c->m->bloat_pages, b);
}

void client_totals(struct manager *m, struct counters *ret)
{
        *ret = m->retired;
        for (struct client *c = m->clients; c; c = c->next) {
                client_lock(c);
                counters_add(ret, &c->c);
                client_unlock(c);
        }
}

void client_free_all(struct manager *m)
{
        while (m->clients)
                client_free(m->clients);
}

static void watch_stopped(struct watch *w)
{
        struct client *c = w->data;
        if (--c->watches_live == 0)
                client_free(c);
}

void client_stats(struct client *c, struct hp_stats *s)
{
        memset(s, 0, sizeof(*s));
        s->faults_served = c->c.faults_served;
        s->pages_populated = c->c.pages_populated;
        s->promotions = c->c.promotions;
        s->promotions_failed = c->c.promotions_failed;
        s->reservations_released = c->c.reservations_released;
        s->ranges = c->ranges.n;
        s->threshold = c->policy.threshold;
        uint64_t bloat = 0;
        for (size_t i = 0; i < c->regions.cap; i++) {
                struct region *r = c->regions.slots[i];
                if (!r)
                        continue;
                if (r->state == REGION_RESERVED) {
                        s->regions_reserved++;
                        s->pages_reserved_unused += HP_REGION_PAGES - r->populated;
                } else if (r->state == REGION_HUGE) {
                        s->regions_huge++;
                        bloat += r->bloat;
                }
        }
        /* the running count, made exact again (regions unmapped or split
         * since took their bloat with them) */
        gauge_sub(&c->m->bloat_pages, c->bloat_pages);
        __atomic_add_fetch(&c->m->bloat_pages, bloat, __ATOMIC_RELAXED);
        c->bloat_pages = bloat;
        s->fault_latency_p50_ns = histogram_quantile(&c->c.fault_latency_ns, 0.50);
        s->fault_latency_p99_ns = histogram_quantile(&c->c.fault_latency_ns, 0.99);
        s->promotion_latency_p50_ns = histogram_quantile(&c->c.promotion_latency_ns, 0.50);
        s->promotion_latency_p99_ns = histogram_quantile(&c->c.promotion_latency_ns, 0.99);
}

static void disconnect(struct client *c, const char *why);

void client_disconnect(struct client *c, const char *why)
{
        client_lock(c);
        if (c->state != CLIENT_DEAD)
                disconnect(c, why);
        client_unlock(c);
}

static void disconnect(struct client *c, const char *why)
{
        struct hp_stats s;

        if (c->state == CLIENT_READY) {
                backends_client_leaving(c);
                control_client_event(c, false);
                client_stats(c, &s);
                /* with tracing on: the latency the program saw, collapse and split counts */
                struct trace_stats ts;
                char tr[512] = "";
                if (trace_read(c->m->trace, c->pid, &ts) == 0)
                        snprintf(tr, sizeof(tr), " bpf_faults=%" PRIu64 " bpf_fault_p50_ns=%" PRIu64
                                 " bpf_fault_p99_ns=%" PRIu64 " bpf_collapse_ok=%" PRIu64
                                 " bpf_collapse_mapped=%" PRIu64 " bpf_collapse_failed=%" PRIu64
                                 " bpf_khugepaged_ok=%" PRIu64 " bpf_thp_splits=%" PRIu64,
                                 ts.faults, ts.fault_p50_ns, ts.fault_p99_ns, ts.collapse_ok,
                                 ts.collapse_mapped, ts.collapse_failed, ts.khugepaged_ok, ts.thp_splits);
                trace_remove_pid(c->m->trace, c->pid);
                /* the backends' own counters that are not 0 */
                const struct backend_counter *bc[BACKEND_COUNTERS_MAX];
                uint64_t bv[BACKEND_COUNTERS_MAX];
                size_t nbc = backend_counters(bc, BACKEND_COUNTERS_MAX);
                backends_read_counters(c->m, c, bv);
                for (size_t i = 0; i < nbc; i++) {
                        size_t l = strlen(tr);
                        if (bc[i]->per_client && bv[i])
                                snprintf(tr + l, sizeof(tr) - l, " %s=%" PRIu64, bc[i]->key, bv[i]);
                }
                coverage_client_gone(c, tr, sizeof(tr));
                log_info("client %d (%s) gone (%s): faults_served=%" PRIu64 " pages_populated=%" PRIu64
                         " promotions=%" PRIu64 " promotions_failed=%" PRIu64 " regions_huge=%" PRIu64
                         " regions_reserved=%" PRIu64 " fault_p50_ns=%" PRIu64 " fault_p99_ns=%" PRIu64
                         " bloat_pages=%" PRIu64 " skipped_headroom=%" PRIu64 " skipped_pressure=%" PRIu64
                         " skipped_bloat=%" PRIu64 "%s",
                         c->pid, c->comm, why, s.faults_served, s.pages_populated, s.promotions,
                         s.promotions_failed, s.regions_huge, s.regions_reserved, s.fault_latency_p50_ns,
                         s.fault_latency_p99_ns, c->bloat_pages, c->c.skipped_headroom, c->c.skipped_pressure,
                         c->c.skipped_bloat, tr);
        } else {
                log_debug("client %d gone during handshake (%s)", c->pid, why);
        }
        c->state = CLIENT_DEAD;
        fault_threads_remove(c);        /* no fault thread serves it from here on */
        limits_forget(c);
        if (c->fds)
                __atomic_store_n(&c->fds->gone, 1, __ATOMIC_RELEASE);
        promote_forget_client(c->m, c->id);
        c->watches_live = 1;    /* guard while stopping */
        if (c->w_sock.loop) {
                c->watches_live++;
                watch_stop(&c->w_sock, watch_stopped);
        }
        if (c->w_pidfd.loop) {
                c->watches_live++;
                watch_stop(&c->w_pidfd, watch_stopped);
        }
        watch_stopped(&(struct watch){ .data = c });
}

static void read_comm(struct client *c)
{
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/comm", (int)c->pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, c->comm, sizeof(c->comm) - 1) : -1;
        if (n > 0 && c->comm[n - 1] == '\n')
                n--;
        c->comm[n > 0 ? n : 0] = '\0';
}

/* The executable's file name, for [Program:NAME] (needs ptrace read access). */
static void read_exe(struct client *c)
{
        char path[64], link[PATH_MAX];
        snprintf(path, sizeof(path), "/proc/%d/exe", (int)c->pid);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n <= 0) {
                snprintf(c->exe, sizeof(c->exe), "%s", c->comm);
                return;
        }
        link[n] = '\0';
        /* an executable replaced on disk reads "/path (deleted)" */
        char *del = n > 10 ? strstr(link + n - 10, " (deleted)") : NULL;
        if (del)
                *del = '\0';
        const char *base = strrchr(link, '/');
        snprintf(c->exe, sizeof(c->exe), "%.*s", (int)sizeof(c->exe) - 1, base ? base + 1 : link);
}

static void on_pidfd(struct watch *w, int revents)
{
        client_disconnect(w->data, "process exited");
}

static int handle_hello(struct client *c, const struct hp_hello *msg)
{
        struct manager *m = c->m;
        struct hp_hello_reply rep = { 0 };
        char why[160] = "";
        int pidfd = -1, r;

        r = access_check_peer(m, c->sock, &c->pid, &c->uid, &c->gid, &pidfd, why, sizeof(why));
        if (r == -EACCES) {
                log_notice("refused pid %d: %s", c->pid, why);
                send_error(c, &msg->hdr, -EACCES, "%s", why);
                safe_close(pidfd);
                return r;
        }
        if (r < 0) {
                send_error(c, &msg->hdr, r, "cannot identify peer: %s", strerror(-r));
                safe_close(pidfd);
                return r;
        }
        c->fds = client_fds_new(pidfd);
        if (!c->fds) {
                safe_close(pidfd);
                return -ENOMEM;
        }
        read_comm(c);
        read_exe(c);
        client_policy_update(c);        /* [Program:NAME] of hugepaged.conf */
        hp_header_init(&rep.hdr, HP_MSG_HELLO_REPLY, sizeof(rep), msg->hdr.seq, 0);
        rep.version = HP_VERSION;
        r = client_send(c, &rep, sizeof(rep), m->uffd_dev);
        if (r < 0)
                return r;
        c->state = CLIENT_UFFD;
        return 0;
}

static int handle_uffd(struct client *c, const struct hp_header *h, int fd)
{
        struct manager *m = c->m;
        char path[64], link[64] = "";
        int r;

        if (fd < 0) {
                send_error(c, h, -EBADF, "no file descriptor passed with the uffd message");
                return -EBADF;
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n < 0 || strcmp(link, "anon_inode:[userfaultfd]") != 0) {
                send_error(c, h, -EBADF, "the passed file descriptor is not a userfaultfd");
                safe_close(fd);
                return -EBADF;
        }
        struct uffdio_api api = {
                .api = UFFD_API,
                .features = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |
                            UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_THREAD_ID |
                            /* MINOR faults in shmem (the shmem backend) */
                            UFFD_FEATURE_MINOR_SHMEM,
        };
        if (ioctl(fd, UFFDIO_API, &api) < 0) {
                r = -errno;
                send_error(c, h, r, "UFFDIO_API on the passed userfaultfd failed: %s", strerror(errno));
                safe_close(fd);
                return r;
        }
        char why[160] = "";
        r = access_check_uffd(c->fds->pidfd, c->pid, fd, why, sizeof(why));
        if (r < 0) {
                if (r == -EPERM)
                        log_notice("refused pid %d: %s", c->pid, why);
                send_error(c, h, r, "%s", why[0] ? why : strerror(-r));
                safe_close(fd);
                return r;
        }
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                r = -errno;
                safe_close(fd);
                return r;
        }
        c->fds->uffd = fd;
        c->maps_fd = -1;
        snprintf(path, sizeof(path), "/proc/%d/maps", (int)c->pid);
        c->maps_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (access_pidfd_alive(c->fds->pidfd) < 0)
                return -ESRCH;  /* the maps opened may be of a process that reused the pid */
        if (watch_start(&m->loop, &c->w_pidfd, c->fds->pidfd, on_pidfd, c) < 0)
                return -ENOMEM;
        char cgwhy[160] = "";
        if (memcg_open(&c->memcg, c->pid, cgwhy, sizeof(cgwhy)) < 0)
                log_notice("client %d: %s: its promotions are not held to a cgroup limit", c->pid, cgwhy);
        c->memcg.checked_ns = now_ns();
        limits_handshake_end(c);
        c->state = CLIENT_READY;
        r = fault_threads_add(c);       /* it serves faults once this request is done (c is locked) */
        if (r < 0)
                return r;
        trace_add_pid(m->trace, c->pid);
        control_client_event(c, true);
        log_debug("client %d (%s) uid %u ready", c->pid, c->comm, (unsigned)c->uid);
        send_reply(c, h, 0);
        return 0;
}

static void handle_register(struct client *c, const struct hp_range_req *req)
{
        struct manager *m = c->m;
        char why[160] = "";
        int r;

        /* proto.c checked alignment, bounds, threshold and backend */
        if (req->length < m->cfg.min_size) {
                send_error(c, &req->hdr, -ERANGE, "%" PRIu64 " bytes is below MinSize=%" PRIu64 " of hugepaged.conf",
                           req->length, m->cfg.min_size);
                return;
        }
        if (c->ranges.n >= m->cfg.max_ranges) {
                send_error(c, &req->hdr, -ENOSPC, "at most %u ranges per client", m->cfg.max_ranges);
                return;
        }
        const struct backend *b = backend_of(req->backend);
        if (!b || !b->register_range) {
                send_error(c, &req->hdr, -EOPNOTSUPP, "backend %u is not served", req->backend);
                return;
        }
        uint64_t start = req->addr, end = req->addr + req->length;
        r = b->register_range(c, req, why, sizeof(why));
        if (r < 0) {
                send_error(c, &req->hdr, r, "%s", why[0] ? why : strerror(-r));
                return;
        }
        log_debug("client %d: registered %s %#" PRIx64 "-%#" PRIx64 " (%" PRIu64 " KiB)", c->pid, b->name, start,
                  end, req->length >> 10);
        send_reply(c, &req->hdr, 0);
}

int client_register_range(struct client *c, const struct range *rg, uint64_t mode, uint64_t ioctls, char *why,
                          size_t whylen)
{
        uint64_t len = rg->end - rg->start;
        int r;

        /* Records left from memory unmapped while unregistered describe
         * nothing now: this is a new mapping. */
        fault_drop_span(c, rg->start, rg->end);
        struct uffdio_register reg = {
                .range = { .start = rg->start, .len = len },
                .mode = mode,
        };
        if (ioctl(c->fds->uffd, UFFDIO_REGISTER, &reg) < 0) {
                r = -errno;
                snprintf(why, whylen, "UFFDIO_REGISTER %#" PRIx64 "+%#" PRIx64 ": %s", rg->start, len,
                         strerror(errno));
                return r;
        }
        if ((reg.ioctls & ioctls) != ioctls) {
                (void)uffd_unregister(c, rg->start, len);
                snprintf(why, whylen, "the kernel does not offer the ioctls this memory needs (%#" PRIx64 " of %#"
                         PRIx64 ")", (uint64_t)reg.ioctls, ioctls);
                return -EOPNOTSUPP;
        }
        r = range_add(&c->ranges, rg);
        if (r < 0) {
                (void)uffd_unregister(c, rg->start, len);
                snprintf(why, whylen, "cannot record range: %s", strerror(-r));
                return r;
        }
        return 0;
}

static void handle_unregister(struct client *c, const struct hp_range_req *req)
{
        int r;
        uint64_t start = req->addr, end = req->addr + req->length;
        if (!range_overlaps(&c->ranges, start, end)) {
                send_error(c, &req->hdr, -ENOENT, "%#" PRIx64 "-%#" PRIx64 " is not registered", start, end);
                return;
        }
        r = uffd_unregister(c, start, req->length);
        if (r < 0 && r != -ENOENT) {
                send_error(c, &req->hdr, r, "UFFDIO_UNREGISTER: %s", strerror(-r));
                return;
        }
        fault_drop_span(c, start, end);
        send_reply(c, &req->hdr, 0);
}

struct promoting_in {
        bool found;
};

static void find_promoting(struct region_table *t, struct region *r, void *ud)
{
        if (r->state == REGION_PROMOTING)
                ((struct promoting_in *)ud)->found = true;
}

static bool span_promoting(struct client *c, uint64_t start, uint64_t end)
{
        struct promoting_in p = { false };
        region_foreach_in(&c->regions, start >> REGION_SHIFT, (end + HP_REGION_SIZE - 1) >> REGION_SHIFT,
                          find_promoting, &p);
        return p.found;
}

void client_policy_update(struct client *c)
{
        const struct config *cfg = &c->m->cfg;
        const struct config_program *p = c->exe[0] ? config_find_program(cfg, c->exe) : NULL;
        struct policy defaults = { .threshold = cfg->threshold, .max_window = cfg->max_window,
                                   .dense_predict = cfg->dense_predict };

        c->layers.program = POLICY_LAYER_UNSET;
        if (p)
                c->layers.program = (struct policy_layer){ .threshold = p->threshold, .max_window = p->max_window,
                                                           .dense_predict = (int8_t)p->dense_predict };
        c->policy = policy_resolve(&defaults, &c->layers);
}

void client_syncs_check(struct client *c)
{
        for (struct sync_wait **pw = &c->syncs; *pw;) {
                struct sync_wait *w = *pw;
                if (span_promoting(c, w->start, w->end)) {
                        pw = &w->next;
                        continue;
                }
                *pw = w->next;
                c->nsyncs--;
                send_reply(c, &(struct hp_header){ .seq = w->seq }, 0);
                free(w);
        }
        __atomic_store_n(&c->fds->hurry, c->syncs != NULL, __ATOMIC_RELEASE);
}

#define MAX_SYNCS 64    /* per client; one per thread in mremap at a time is the norm */

static void handle_sync(struct client *c, const struct hp_range_req *req)
{
        uint64_t start = req->addr, end = req->addr + req->length;
        /* an mremap met a VMA split by regions handed to the kernel */
        promote_rearm_pending(c);
        if (!span_promoting(c, start, end)) {
                send_reply(c, &req->hdr, 0);
                return;
        }
        struct sync_wait *w = c->nsyncs < MAX_SYNCS ? calloc(1, sizeof(*w)) : NULL;
        if (!w) {
                send_error(c, &req->hdr, -EBUSY, "too many sync requests waiting");
                return;
        }
        *w = (struct sync_wait){ .next = c->syncs, .seq = req->hdr.seq, .start = start, .end = end };
        c->syncs = w;
        c->nsyncs++;
        /* An mremap waits: regions handed to the kernel ahead of a stream
         * (promote.c) give up waiting for it. */
        __atomic_store_n(&c->fds->hurry, 1, __ATOMIC_RELEASE);
}

static void handle_request(struct client *c, const void *buf, ssize_t len, int fd)
{
        const struct hp_header *h = buf;
        char why[HP_ERROR_TEXT];
        int type = proto_check_request(buf, (size_t)len, why, sizeof(why));

        if (type < 0) {
                safe_close(fd);
                send_error(c, (size_t)len >= sizeof(*h) ? h : NULL, type, "%s", why);
                if (c->state != CLIENT_READY)
                        client_disconnect(c, "bad handshake");
                return;
        }
        /* Only the uffd message, in its place in the handshake, may pass an
         * fd; any other is closed here (once this leaked one per message). */
        if (type != HP_MSG_UFFD || c->state != CLIENT_UFFD)
                fd = safe_close(fd);

        switch (c->state) {
        case CLIENT_HELLO:
                if (type != HP_MSG_HELLO) {
                        send_error(c, h, -EPROTO, "expected hello");
                        client_disconnect(c, "bad handshake");
                } else if (handle_hello(c, buf) < 0)
                        client_disconnect(c, "refused");
                return;
        case CLIENT_UFFD:
                if (type != HP_MSG_UFFD) {
                        safe_close(fd);
                        send_error(c, h, -EPROTO, "expected the uffd message");
                        client_disconnect(c, "bad handshake");
                } else if (handle_uffd(c, h, fd) < 0)
                        client_disconnect(c, "no usable uffd");
                return;
        case CLIENT_READY:
                break;
        case CLIENT_DEAD:
                return;
        }

        switch (type) {
        case HP_MSG_REGISTER:
                handle_register(c, buf);
                break;
        case HP_MSG_UNREGISTER:
                handle_unregister(c, buf);
                break;
        case HP_MSG_SYNC:
                handle_sync(c, buf);
                break;
        case HP_MSG_INHERIT:
                client_inherit(c, h);
                break;
        case HP_MSG_SET_POLICY: {
                /* the client's own layer (policy.h): what it sets, over the
                 * config and [Program:NAME], under D-Bus SetPolicy */
                const struct hp_policy *p = buf;
                c->layers.client.threshold = p->threshold;
                c->layers.client.dense_predict = (p->flags & HP_POLICY_NO_DENSE_PREDICT) ? 0 : -1;
                client_policy_update(c);
                send_reply(c, h, 0);
                break;
        }
        case HP_MSG_GET_STATS: {
                struct hp_stats_reply rep = { 0 };
                hp_header_init(&rep.hdr, HP_MSG_STATS_REPLY, sizeof(rep), h->seq, 0);
                client_stats(c, &rep.stats);
                (void)client_send(c, &rep, sizeof(rep), -1);
                break;
        }
        default: {
                const struct backend *b = backend_for_request((uint32_t)type);
                if (b)
                        b->request(c, buf);     /* a request of one kind of memory: it answers */
                else
                        send_error(c, h, -EPROTO, "message type %u is not a request", type);
        }
        }
}

static void read_requests(struct client *c)
{
        _Alignas(8) char buf[HP_MSG_MAX];

        for (int i = 0; i < REQUESTS_PER_WAKEUP && c->state != CLIENT_DEAD; i++) {
                if (!limits_take_request(c))
                        return;         /* limits.c runs this again when the rate allows */
                int fd = -1;
                ssize_t n = hp_recv_fd(c->sock, buf, sizeof(buf), &fd, MSG_DONTWAIT);
                if (n == -EAGAIN)
                        return;
                if (n == -EMSGSIZE) {
                        send_error(c, NULL, -EMSGSIZE, "message larger than %u bytes", HP_MSG_MAX);
                        continue;
                }
                if (n <= 0) {
                        client_disconnect(c, n == 0 ? "closed its connection" : "socket error");
                        return;
                }
                handle_request(c, buf, n, fd);
        }
        if (c->state != CLIENT_DEAD)
                watch_defer(&c->w_sock);        /* more may be queued: after the others */
}

static void on_sock(struct watch *w, int revents)
{
        struct client *c = w->data;

        client_lock(c);
        read_requests(c);
        client_unlock(c);
}

void client_accept(struct manager *m)
{
        for (;;) {
                int fd = accept4(m->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warning_errno(errno, "accept: %m");
                        return;
                }
                /* The uid is known at once: a connection that never says
                 * hello counts against its user too. */
                struct ucred cred;
                socklen_t credlen = sizeof(cred);
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) < 0) {
                        close(fd);
                        continue;
                }
                struct hp_error e = { 0 };
                int r = limits_admit(m, cred.uid, e.text, sizeof(e.text));
                if (r < 0) {
                        hp_header_init(&e.hdr, HP_MSG_ERROR, sizeof(e), 0, r);
                        (void)hp_send_fd(fd, &e, sizeof(e), -1);
                        close(fd);
                        log_debug("connection of pid %d refused: %s", (int)cred.pid, e.text);
                        continue;
                }
                struct client *c = calloc(1, sizeof(*c));
                if (!c) {
                        close(fd);
                        return;
                }
                pthread_mutexattr_t ma;
                pthread_mutexattr_init(&ma);
                pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
                pthread_mutex_init(&c->lock, &ma);
                pthread_mutexattr_destroy(&ma);
                c->refs = 1;            /* the list's */
                c->m = m;
                c->id = ++m->next_client_id;
                c->sock = fd;
                c->uid = cred.uid;
                c->maps_fd = -1;
                c->layers = (struct policy_layers){ POLICY_LAYER_UNSET, POLICY_LAYER_UNSET, POLICY_LAYER_UNSET };
                client_policy_update(c);
                c->state = CLIENT_HELLO;
                c->next = m->clients;
                if (m->clients)
                        m->clients->prev = c;
                m->clients = c;
                m->nclients++;
                limits_handshake_begin(c);
                if (watch_start(&m->loop, &c->w_sock, fd, on_sock, c) < 0)
                        client_disconnect(c, "out of io_uring entries");
        }
}
