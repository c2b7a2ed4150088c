/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hugetlb.c: the hugetlb backend (HP_RANGE_HUGETLB): private anonymous
 * MAP_HUGETLB ranges, whose faults the daemon serves with one 2 MiB
 * UFFDIO_COPY from its zero source each, with the pool (hugetlb-pool.c)
 * grown for them when it has no page to give; accounting as in hugetlb.h.
 *
 * Threads: faults are served on the fault threads, everything else that
 * touches clients on the main thread, each with the client locked
 * (client.h); the backend's global state is set before the fault threads
 * start and read-only to them (the pool's counts are under its lock).
 * FILL_THREADS fill threads (hp-hugetlb-fill, a workq) copy pages ahead of
 * a sequential stream of faults (two faults in consecutive pages), up to
 * HUGETLB_FILL_AHEAD pages past the last fault and within the range: a 2 MiB
 * copy costs more than the kernel's own clear, so the copy must not be on
 * the fault path, and a stream then finds most of its pages there. The
 * pages are the client's anyway (the pool holds them for its ranges). A
 * fault in a page a fill thread has is left to that copy, which wakes the
 * thread; a failed fill wakes it too, and the main thread serves the retry.
 * Fill jobs carry a client id and a reference to the client's fds, never a
 * client; a fill counts its page in the fds (worker_pages) before the wake,
 * so that a program that exits at once still has it in its counters.
 *
 * Kernel behaviour relied on (6.18):
 * - UFFDIO_COPY into hugetlb must be 2 MiB aligned and sized; it allocates
 *   the page from the pool (using the mapping's reservation if it has one).
 * - With no free huge page, UFFDIO_COPY fails -EEXIST (not -ENOMEM): an
 *   -EEXIST while the pool has nothing available means "grow the pool".
 * Must never: block the main thread on the pool, or let a client's charge
 * exceed its budget.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysinfo.h>

#include "backend.h"
#include "client.h"
#include "compat.h"
#include "fault.h"
#include "hugetlb.h"
#include "log.h"
#include "manager.h"
#include "pressure.h"
#include "vma.h"

#define HUGETLB_FILL_AHEAD 32   /* pages filled ahead of a sequential stream */
#define JOBS_PER_CLIENT 4       /* requests a client may have waiting on the pool thread */
#define FILL_THREADS 2

/* Per client: client->backend[HP_RANGE_HUGETLB], from its first hugetlb request on. */
struct client_hugetlb {
        uint64_t pending;       /* pages of the last HUGETLB_RESERVE, not registered yet */
        uint64_t shared;        /* pages of its shared mappings (HP_HUGETLB_SHARED): charged until it is gone */
        uint64_t shared_asked;  /* a shared request waiting on the pool, charged meanwhile */
        uint64_t shared_last;   /* the last shared request granted (taken back if its mmap failed) */
        uint64_t faults;        /* hugetlb faults served */
        uint64_t prefilled;     /* pages filled ahead of a stream by the fill threads */
        unsigned jobs;          /* requests waiting on the pool thread */
        uint64_t last_eexist;   /* page of the last fault whose copy found -EEXIST */
        uint64_t last_fault;    /* page of the last fault: two in a row make a stream */
        uint64_t ahead_end;     /* the stream's pages are queued up to here */
        unsigned nfilling;
        uint64_t filling[HUGETLB_FILL_AHEAD + 1];       /* pages a fill thread has now */
};

/* The backend's global state: manager->backend[HP_RANGE_HUGETLB], NULL when off. */
struct hugetlb {
        struct manager *m;
        struct hugetlb_pool *pool;
        struct workq *fills;            /* NULL: no fill threads, faults are served all the same */
        bool shrink_queued;
        uint64_t fruitless_added, fruitless_charged;    /* last shrink that removed nothing */
        uint64_t retired_faults, retired_prefilled;     /* of clients gone */
};

/* A page to fill ahead of a stream: one 2 MiB UFFDIO_COPY. */
struct fill_job {
        struct work w;
        uint64_t client_id;
        struct client_fds *fds;
        const void *src;
        uint64_t addr;
        int result;
};

static struct hugetlb *hugetlb_of(struct manager *m)
{
        return m->backend[HP_RANGE_HUGETLB];
}

static struct client_hugetlb *state_of(const struct client *c)
{
        return c->backend[HP_RANGE_HUGETLB];
}

/* The client's state, made at its first hugetlb request; NULL: no memory. */
static struct client_hugetlb *state_get(struct client *c)
{
        if (!c->backend[HP_RANGE_HUGETLB])
                c->backend[HP_RANGE_HUGETLB] = calloc(1, sizeof(struct client_hugetlb));
        return c->backend[HP_RANGE_HUGETLB];
}

/* ---- budgets -------------------------------------------------------------------- */

static uint64_t size_pages(const struct config_size *s)
{
        if (s->percent) {
                struct sysinfo si;
                if (sysinfo(&si) < 0)
                        return 0;
                return (uint64_t)si.totalram * si.mem_unit / 100 * s->percent / HP_REGION_SIZE;
        }
        return s->bytes / HP_REGION_SIZE;
}

static uint64_t budget_pages(struct manager *m)
{
        return size_pages(&m->cfg.hugetlb_max);
}

/* 0: no per-client limit */
static uint64_t client_cap_pages(struct manager *m)
{
        return size_pages(&m->cfg.huge_per_client);
}

static uint64_t ranges_pages(const struct client *c)
{
        uint64_t n = 0;
        for (size_t i = 0; i < c->ranges.n; i++)
                if (c->ranges.v[i].backend == HP_RANGE_HUGETLB)
                        n += (c->ranges.v[i].end - c->ranges.v[i].start + HP_REGION_SIZE - 1) / HP_REGION_SIZE;
        return n;
}

/* Pages charged to c now. */
static uint64_t client_pages(const struct client *c)
{
        const struct client_hugetlb *h = state_of(c);
        return h ? ranges_pages(c) + h->pending + h->shared + h->shared_asked : 0;
}

static uint64_t charged_total(struct manager *m)
{
        uint64_t n = 0;
        for (struct client *c = m->clients; c; c = c->next)
                if (c->state != CLIENT_DEAD) {
                        client_lock(c);
                        n += client_pages(c);
                        client_unlock(c);
                }
        return n;
}

static void maybe_shrink(struct manager *m)
{
        struct hugetlb *h = hugetlb_of(m);
        if (!h || h->shrink_queued)
                return;
        uint64_t added = hugetlb_pool_added(h->pool);
        uint64_t charged = charged_total(m);
        if (added <= charged)
                return;
        /* pages still in use by someone nobody charged (the pool only shrinks
         * as they are freed): try again when something changes, not per tick */
        if (added == h->fruitless_added && charged == h->fruitless_charged)
                return;
        if (hugetlb_pool_queue(h->pool, &(struct pool_job){ .kind = POOL_SHRINK, .charged = charged }) == 0)
                h->shrink_queued = true;
}

/* ---- faults --------------------------------------------------------------------- */

static int copy_page(struct client *c, uint64_t dst)
{
        return uffd_copy_zero(c, dst, HP_REGION_SIZE, NULL, true);
}

static void wake_page(struct client *c, uint64_t dst)
{
        uffd_wake(c, dst, HP_REGION_SIZE);
}

static void served(struct client *c, struct client_hugetlb *h, uint64_t t0)
{
        h->faults++;
        c->c.pages_populated += HP_REGION_PAGES;
        fault_served(c, t0);
}

/* No page for the fault and none to be had: leave it to the kernel, which
 * does what it would have done without the daemon (SIGBUS for a
 * MAP_NORESERVE mapping with an empty pool). */
static void fail_open(struct client *c, uint64_t dst, const char *why)
{
        log_notice("client %d: no huge page for %#" PRIx64 " (%s): the kernel handles it", c->pid, dst, why);
        (void)uffd_unregister(c, dst, HP_REGION_SIZE);
        fault_drop_span(c, dst, dst + HP_REGION_SIZE);
        wake_page(c, dst);
}

static bool filling(const struct client_hugetlb *h, uint64_t dst)
{
        for (unsigned i = 0; i < h->nfilling; i++)
                if (h->filling[i] == dst)
                        return true;
        return false;
}

/* A fault at dst: if it continues a stream, have the fill threads copy the
 * pages after it, up to HUGETLB_FILL_AHEAD past it, within its range. */
static void fill_ahead(struct client *c, struct client_hugetlb *h, uint64_t dst)
{
        struct hugetlb *hb = hugetlb_of(c->m);
        bool stream = dst == h->last_fault + HP_REGION_SIZE || filling(h, dst);

        h->last_fault = dst;
        if (!stream || !hb || !hb->fills || pressure_level(c->m) != PRESSURE_NONE)
                return;
        const struct range *rg = range_find(&c->ranges, dst);
        if (!rg || rg->backend != HP_RANGE_HUGETLB)
                return;
        uint64_t from = dst + HP_REGION_SIZE, to = dst + (HUGETLB_FILL_AHEAD + 1) * HP_REGION_SIZE;
        if (h->ahead_end > from && h->ahead_end <= to)
                from = h->ahead_end;            /* the same stream: what is new */
        if (to > rg->end)
                to = rg->end;
        uint64_t a = from;
        for (; a < to && h->nfilling < HUGETLB_FILL_AHEAD + 1; a += HP_REGION_SIZE) {
                if (filling(h, a))
                        continue;
                struct fill_job *j = calloc(1, sizeof(*j));
                if (!j)
                        break;
                *j = (struct fill_job){ .client_id = c->id, .fds = client_fds_ref(c->fds), .src = c->m->zero_page,
                                        .addr = a };
                h->filling[h->nfilling++] = a;
                workq_push(hb->fills, &j->w);
        }
        h->ahead_end = a;
}

/* Bring c's fill counters up to what its fill threads counted (the count
 * in its fds, made before each wake), reported or not. */
static void count_fills(struct client *c, struct client_hugetlb *h)
{
        uint64_t done = __atomic_load_n(&c->fds->worker_pages, __ATOMIC_ACQUIRE);

        if (done <= h->prefilled)
                return;
        uint64_t n = done - h->prefilled;
        h->prefilled += n;
        c->c.pages_populated += n * HP_REGION_PAGES;
}

/* A fill thread: copy the page, count it, then wake whoever waits there. */
static enum work_step fill_run(struct work *w, void *data)
{
        struct fill_job *j = (struct fill_job *)w;
        struct uffdio_copy cp = { .dst = j->addr, .src = (uint64_t)(uintptr_t)j->src, .len = HP_REGION_SIZE,
                                  .mode = UFFDIO_COPY_MODE_DONTWAKE };

        j->result = __atomic_load_n(&j->fds->gone, __ATOMIC_ACQUIRE) ? -ESRCH :
                    ioctl(j->fds->uffd, UFFDIO_COPY, &cp) < 0 ? -errno : 0;
        if (j->result == 0) {
                __atomic_add_fetch(&j->fds->worker_pages, 1, __ATOMIC_RELEASE);
                struct uffdio_range r = { .start = j->addr, .len = HP_REGION_SIZE };
                (void)ioctl(j->fds->uffd, UFFDIO_WAKE, &r);
        }
        return WORK_DONE;
}

static void fill_drop(struct work *w, void *data)
{
        struct fill_job *j = (struct fill_job *)w;
        client_fds_unref(j->fds);
        free(j);
}

/* The main thread: a fill is over. */
static void fill_done(struct work *w, void *data)
{
        struct fill_job *j = (struct fill_job *)w;
        struct client *c = client_by_id(data, j->client_id);

        if (c)
                client_lock(c);
        struct client_hugetlb *h = c ? state_of(c) : NULL;
        if (c && h && c->state == CLIENT_READY) {
                for (unsigned i = 0; i < h->nfilling; i++)
                        if (h->filling[i] == j->addr) {
                                h->filling[i] = h->filling[--h->nfilling];
                                break;
                        }
                if (j->result == 0) {
                        count_fills(c, h);
                } else {
                        /* -EEXIST (there already, or no free page), -ENOENT
                         * (unmapped): a thread that faulted here meanwhile
                         * was left to this copy; it faults again, and the
                         * main thread serves it. */
                        wake_page(c, j->addr);
                }
        }
        if (c)
                client_unlock(c);
        fill_drop(w, data);
}

static const struct workq_ops fill_ops = {
        .run = fill_run,
        .done = fill_done,
        .drop = fill_drop,
};

static void hugetlb_fault(struct client *c, struct range *rg, uint64_t addr, uint64_t t0)
{
        struct hugetlb *hb = hugetlb_of(c->m);
        struct client_hugetlb *h = state_get(c);
        uint64_t dst = addr & ~(HP_REGION_SIZE - 1);

        if (!h || !hb) {
                fail_open(c, dst, "out of memory");
                return;
        }
        if (filling(h, dst)) {
                /* a fill thread is copying it: that copy wakes the thread */
                fill_ahead(c, h, dst);
                return;
        }
        int e = copy_page(c, dst);
        if (e == 0) {
                h->last_eexist = 0;
                served(c, h, t0);
                fill_ahead(c, h, dst);
                return;
        }
        /* -EEXIST is also what a copy that found no free page returns (a
         * MAP_NORESERVE mapping, or pages taken by someone else): when the
         * pool has nothing available, or the same page faults again after an
         * -EEXIST (a page that is there does not fault), grow the pool, then
         * copy; the thread waits in its fault meanwhile. */
        bool again = e == -EEXIST && h->last_eexist == dst;
        if (e == -EEXIST)
                h->last_eexist = dst;
        if (e == -EEXIST && (again || hugetlb_pool_available(hb->pool) == 0)) {
                h->last_eexist = 0;
                if (pressure_level(c->m) != PRESSURE_NONE) {
                        /* no growing now: what the kernel does without us */
                        fail_open(c, dst, "memory pressure: the pool does not grow now");
                        return;
                }
                struct pool_job j = { .kind = POOL_FAULT, .client_id = c->id, .addr = dst, .want = 1,
                                      .budget = budget_pages(c->m), .t0 = t0 };
                if (hugetlb_pool_queue(hb->pool, &j) == 0)
                        return;
                fail_open(c, dst, "out of memory");
                return;
        }
        /* -EEXIST (already there), -EAGAIN (an event in flight), -ENOENT
         * (unmapped meanwhile): the thread retries on its own. */
        wake_page(c, dst);
}

static void fault_grown(struct client *c, struct client_hugetlb *h, const struct pool_job *j)
{
        if (j->result < 0) {
                fail_open(c, j->addr, j->why);
                return;
        }
        int e = copy_page(c, j->addr);
        if (e == 0)
                served(c, h, j->t0);    /* the wait for the pool included */
        else if (e == -EEXIST)
                /* no page to be had even now (or, rarely, a page already
                 * there, which the kernel then keeps serving): no retry loop */
                fail_open(c, j->addr, "no free page after growing the pool");
        else
                wake_page(c, j->addr);
}

/* ---- requests --------------------------------------------------------------------- */

static void hugetlb_reserve(struct client *c, const void *msg)
{
        const struct hp_hugetlb_req *req = msg;
        struct manager *m = c->m;
        struct hugetlb *hb = hugetlb_of(m);
        char why[HP_ERROR_TEXT];

        if (!hb) {
                client_reply(c, req->hdr.seq, -EOPNOTSUPP, "the hugetlb backend is off (no 2 MiB huge pages)");
                return;
        }
        struct client_hugetlb *h = state_get(c);
        if (!h) {
                client_reply(c, req->hdr.seq, -ENOMEM, "out of memory");
                return;
        }
        bool shared = req->flags & HP_HUGETLB_SHARED;
        if (req->pages == 0) {          /* the mmap it was for failed */
                if (shared) {
                        h->shared -= h->shared_last < h->shared ? h->shared_last : h->shared;
                        h->shared_last = 0;
                } else
                        h->pending = 0;
                client_reply(c, req->hdr.seq, 0, NULL);
                maybe_shrink(m);
                return;
        }
        if (shared && h->shared_asked) {
                client_reply(c, req->hdr.seq, -EBUSY, "a shared hugetlb request is already waiting");
                return;
        }
        uint64_t cap = client_cap_pages(m), have = ranges_pages(c) + h->shared;
        if (cap && (req->pages > cap || have > cap - req->pages)) {
                snprintf(why, sizeof(why), "%" PRIu64 " huge pages asked, %" PRIu64 " held: over MaxHugePerClient= "
                         "(%" PRIu64 " pages)", req->pages, have, cap);
                client_reply(c, req->hdr.seq, -EDQUOT, why);
                return;
        }
        if (h->jobs >= JOBS_PER_CLIENT) {
                client_reply(c, req->hdr.seq, -EBUSY, "too many hugetlb requests waiting");
                return;
        }
        struct pool_job j = { .kind = POOL_RESERVE, .client_id = c->id, .seq = req->hdr.seq, .want = req->pages,
                              .budget = budget_pages(m), .no_grow = pressure_level(m) != PRESSURE_NONE,
                              .shared = shared };
        if (hugetlb_pool_queue(hb->pool, &j) < 0) {
                client_reply(c, req->hdr.seq, -ENOMEM, "out of memory");
                return;
        }
        h->jobs++;
        /* charged from now: a shrink must not take them */
        if (shared)
                h->shared_asked = req->pages;
        else
                h->pending = req->pages;
}

/* MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB: the kernel's own hugetlbfs file */
static int hugetlb_ok(const struct procmap_query *q, const char *name, char *why, size_t whylen)
{
        if ((q->vma_flags & PROCMAP_QUERY_VMA_SHARED) || q->vma_page_size != HP_REGION_SIZE ||
            strncmp(name, "/anon_hugepage", 14) != 0) {
                snprintf(why, whylen, "%#llx-%#llx is not private anonymous hugetlb memory of 2 MiB pages",
                         (unsigned long long)q->vma_start, (unsigned long long)q->vma_end);
                return -EFAULT;
        }
        return 0;
}

/* PROCMAP_QUERY only (kernel 6.11+): it says the page size of a VMA. */
static int check_hugetlb(int maps_fd, uint64_t start, uint64_t end, char *why, size_t whylen)
{
        if (maps_fd < 0) {
                snprintf(why, whylen, "cannot read the process's mappings");
                return -EOPNOTSUPP;
        }
        int r = vma_walk(maps_fd, start, end, hugetlb_ok, "anonymous hugetlb memory", why, whylen);
        if (r == -ENOTTY) {
                snprintf(why, whylen, "the hugetlb backend needs PROCMAP_QUERY (Linux 6.11)");
                return -EOPNOTSUPP;
        }
        return r;
}

static int hugetlb_register(struct client *c, const struct hp_range_req *req, char *why, size_t whylen)
{
        struct manager *m = c->m;
        uint64_t start = req->addr, end = req->addr + req->length, pages = req->length / HP_REGION_SIZE;
        int r;

        if (!hugetlb_of(m)) {
                snprintf(why, whylen, "the hugetlb backend is off (no 2 MiB huge pages)");
                return -EOPNOTSUPP;
        }
        r = check_hugetlb(c->maps_fd, start, end, why, whylen);
        if (r < 0)
                return r;
        uint64_t cap = client_cap_pages(m), have = ranges_pages(c);
        if (cap && (pages > cap || have > cap - pages)) {
                snprintf(why, whylen, "%" PRIu64 " huge pages registered, %" PRIu64 " held: over "
                         "MaxHugePerClient= (%" PRIu64 " pages)", pages, have, cap);
                return -EDQUOT;
        }
        struct client_hugetlb *h = state_get(c);
        if (!h) {
                snprintf(why, whylen, "out of memory");
                return -ENOMEM;
        }
        struct range rg = { .start = start, .end = end, .threshold = 0, .backend = HP_RANGE_HUGETLB };
        r = client_register_range(c, &rg, UFFDIO_REGISTER_MODE_MISSING, 1ull << _UFFDIO_COPY, why, whylen);
        if (r < 0)
                return r;
        h->pending = 0;
        return 0;
}

/* ---- results of the pool thread ------------------------------------------------ */

static void pool_done(struct pool_job *j, void *data)
{
        struct manager *m = data;
        struct hugetlb *hb = hugetlb_of(m);
        struct client *c = j->kind == POOL_SHRINK ? NULL : client_by_id(m, j->client_id);

        if (c)
                client_lock(c);
        struct client_hugetlb *h = c ? state_of(c) : NULL;
        if (c && h && c->state == CLIENT_READY) {
                if (j->kind == POOL_RESERVE) {
                        if (h->jobs > 0)
                                h->jobs--;
                        if (j->shared) {
                                h->shared_last = j->result < 0 ? 0 : h->shared_asked;
                                h->shared += h->shared_last;
                                h->shared_asked = 0;
                        } else if (j->result < 0)
                                h->pending = 0;
                        if (j->result < 0)
                                log_notice("client %d (%s): %" PRIu64 " huge pages not to be had: %s", c->pid,
                                           c->comm, j->want, j->why);
                        client_reply(c, j->seq, j->result, j->result < 0 ? j->why : NULL);
                } else
                        fault_grown(c, h, j);
        }
        if (c)
                client_unlock(c);
        if (hb && j->kind == POOL_FAULT)
                hugetlb_pool_release_hold(hb->pool, j->got);
        if (hb && j->kind == POOL_SHRINK) {
                hb->shrink_queued = false;
                if (j->got && pressure_level(m) != PRESSURE_NONE)
                        pressure_released(m, j->got * HP_REGION_SIZE);
                if (j->got == 0) {
                        hb->fruitless_added = hugetlb_pool_added(hb->pool);
                        hb->fruitless_charged = j->charged;
                } else
                        hb->fruitless_added = hb->fruitless_charged = 0;
        }
        free(j);
        /* pages added for a request that failed, or a client that left */
        maybe_shrink(m);
}

/* ---- life ------------------------------------------------------------------------- */

static int hugetlb_start(struct manager *m)
{
        struct hugetlb *hb = calloc(1, sizeof(*hb));
        int r;

        if (!hb)
                return -ENOMEM;
        hb->m = m;
        /* The backend's state is in place before the pool's jobs can report. */
        m->backend[HP_RANGE_HUGETLB] = hb;
        /* the record of the pool goes next to the socket (the runtime directory) */
        const char *sock = m->cfg.socket_path, *slash = sock ? strrchr(sock, '/') : NULL;
        char *dir = slash ? strndup(sock, (size_t)(slash - sock)) : NULL;
        r = hugetlb_pool_new(&m->loop, dir, pool_done, m, &hb->pool);
        free(dir);
        if (r < 0 || !hb->pool) {
                m->backend[HP_RANGE_HUGETLB] = NULL;
                free(hb);
                return r;       /* 0: no huge pages in this kernel, the backend is off */
        }
        if (workq_new(&m->loop, "hp-hugetlb-fill", FILL_THREADS, &fill_ops, m, &hb->fills) < 0) {
                log_warning("hugetlb: no fill threads: faults are served all the same, none ahead of a stream");
                hb->fills = NULL;
        }
        log_info("hugetlb pool: %" PRIu64 " pages of 2 MiB at start; the daemon may add up to %" PRIu64,
                 hugetlb_pool_base(hb->pool) + hugetlb_pool_added(hb->pool), budget_pages(m));
        maybe_shrink(m);        /* pages inherited from a daemon that was killed */
        return 0;
}

static void hugetlb_stop(struct manager *m)
{
        struct hugetlb *hb = hugetlb_of(m);

        if (!hb)
                return;
        workq_free(hb->fills);
        hugetlb_pool_free(hb->pool);    /* puts back what it added to the pool */
        m->backend[HP_RANGE_HUGETLB] = NULL;
        free(hb);
}

static void hugetlb_tick(struct manager *m)
{
        maybe_shrink(m);
}

/* Under pressure the pool stops growing and fill-ahead stops (pressure.h);
 * what nobody holds goes back now, as on every tick. */
static void hugetlb_pressure(struct manager *m, int level)
{
        struct hugetlb *hb = hugetlb_of(m);
        if (hb && level != PRESSURE_NONE) {
                hb->fruitless_added = hb->fruitless_charged = 0;        /* try again at once */
                maybe_shrink(m);
        }
}

/* c disconnects: count all its fills done, reported or not, before its
 * counters are read for the last time. */
static void hugetlb_client_leaving(struct client *c)
{
        struct client_hugetlb *h = state_of(c);
        if (h)
                count_fills(c, h);
}

static void hugetlb_client_gone(struct manager *m, struct client *c)
{
        struct client_hugetlb *h = state_of(c);
        struct hugetlb *hb = hugetlb_of(m);

        if (!h)
                return;
        if (hb) {
                hb->retired_faults += h->faults;
                hb->retired_prefilled += h->prefilled;
        }
        free(h);
        c->backend[HP_RANGE_HUGETLB] = NULL;
        maybe_shrink(m);        /* its pages go back to the pool */
}

static const struct backend_counter hugetlb_counters[] = {
        { "HugetlbPages", "hugetlb_pages", true },              /* charged now */
        { "HugetlbFaults", "hugetlb_faults", true },            /* served */
        { "HugetlbPrefilled", "hugetlb_prefilled", true },      /* filled ahead of a stream */
        { "HugetlbPoolAdded", "hugetlb_pool_added", false },    /* pages the daemon added and holds */
        { "HugetlbPoolBase", "hugetlb_pool_base", false },      /* vm.nr_hugepages at start */
        { "HugetlbBudget", "hugetlb_budget", false },           /* HugetlbMaxSize= in pages */
};

static void hugetlb_read_counters(struct manager *m, const struct client *c, uint64_t *v)
{
        struct hugetlb *hb = hugetlb_of(m);

        if (c) {
                const struct client_hugetlb *h = state_of(c);
                v[0] = client_pages(c);
                v[1] = h ? h->faults : 0;
                v[2] = h ? h->prefilled : 0;
                return;
        }
        if (!hb)
                return;
        v[0] = charged_total(m);
        v[1] = hb->retired_faults;
        v[2] = hb->retired_prefilled;
        for (struct client *l = m->clients; l; l = l->next) {
                client_lock(l);
                const struct client_hugetlb *h = state_of(l);
                if (h) {
                        v[1] += h->faults;
                        v[2] += h->prefilled;
                }
                client_unlock(l);
        }
        v[3] = hugetlb_pool_added(hb->pool);
        v[4] = hugetlb_pool_base(hb->pool);
        v[5] = budget_pages(m);
}

const struct backend backend_hugetlb = {
        .name = "hugetlb",
        .kind = HP_RANGE_HUGETLB,
        .start = hugetlb_start,
        .stop = hugetlb_stop,
        .register_range = hugetlb_register,
        .fault = hugetlb_fault,
        .request_type = HP_MSG_HUGETLB_RESERVE,
        .request = hugetlb_reserve,
        .tick = hugetlb_tick,
        .pressure = hugetlb_pressure,
        .client_leaving = hugetlb_client_leaving,
        .client_gone = hugetlb_client_gone,
        .counters = hugetlb_counters,
        .ncounters = sizeof(hugetlb_counters) / sizeof(hugetlb_counters[0]),
        .read_counters = hugetlb_read_counters,
};
