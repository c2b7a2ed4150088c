/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault.c: reads a client's userfaultfd and serves what it finds: page
 * faults (UFFDIO_COPY windows from a zero source, the dense fast path) and
 * the non-cooperative events (UNMAP, REMOVE, REMAP) that keep the range and
 * region records true. Runs on the main thread; must never block: every
 * ioctl here is a bounded kernel operation, collapses go to promote.c.
 *
 * Kernel behaviour relied on:
 * - UFFDIO_COPY stops at the first populated page: -EEXIST, or -EAGAIN with
 *   a partial count; it wakes the faulting range itself.
 * - -EAGAIN with nothing copied: a non-cooperative event is in flight
 *   (mmap_changing): wake the thread, it faults again once the event is read.
 * - UFFDIO_UNREGISTER wakes every fault blocked in the range.
 * - -ENOENT/-ESRCH/-EFAULT from ioctls: the VMA or the process went away: a
 *   normal race, not an error.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "manager.h"

#define MSGS_PER_READ 64
#define READS_PER_WAKEUP 16     /* fairness: other clients get a turn */
#define NATIVE_AHEAD_MAX 16     /* regions handed to the kernel ahead of a stream */
#define AHEAD_REGION_NS 100000  /* a stream writes 2 MiB in no less than this */
/* Regions of one client unregistered at a time for native jobs: each may
 * split a VMA in three until it is registered again, and the client's own
 * mmap() calls must never meet vm.max_map_count because of us. */
#define MAX_UNREGISTERED 256

#define COUNT(cl, field, n) do { (cl)->c.field += (n); (cl)->m->c.field += (n); } while (0)

static void wake(struct client *c, uint64_t addr, uint64_t len)
{
        struct uffdio_range r = { .start = addr, .len = len };
        if (ioctl(c->uffd, UFFDIO_WAKE, &r) < 0 && errno != ENOENT && errno != ESRCH)
                log_debug_errno(errno, "client %d: UFFDIO_WAKE %#" PRIx64 ": %m", c->pid, addr);
}

int region_unregister(struct client *c, uint64_t start, uint64_t len)
{
        struct uffdio_range r = { .start = start, .len = len };
        return ioctl(c->uffd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

/* Serve one 4 KiB page outside any region record (unknown or partial range). */
static void serve_page(struct client *c, uint64_t page_addr)
{
        struct uffdio_copy cp = { .dst = page_addr, .src = (uint64_t)(uintptr_t)c->m->zero_page,
                                  .len = HP_PAGE_SIZE };
        if (ioctl(c->uffd, UFFDIO_COPY, &cp) == 0) {
                COUNT(c, pages_populated, 1);
                return;
        }
        wake(c, page_addr, HP_PAGE_SIZE);
}

/*
 * Copy `n` zero pages at page `page` of region r. Returns pages copied
 * (the faulting page is the first, so > 0 means it is served) or -errno.
 */
static int copy_window(struct client *c, struct region *r, uint64_t rstart, unsigned page, unsigned n)
{
        struct uffdio_copy cp = {
                .dst = rstart + ((uint64_t)page << PAGE_SHIFT_4K),
                .src = (uint64_t)(uintptr_t)c->m->zero_page,
                .len = (uint64_t)n << PAGE_SHIFT_4K,
        };
        int e = ioctl(c->uffd, UFFDIO_COPY, &cp) < 0 ? -errno : 0;
        if (e == 0 || (e == -EAGAIN && cp.copy > 0)) {
                unsigned done = e == 0 ? n : (unsigned)(cp.copy >> PAGE_SHIFT_4K);
                region_mark(r, page, done);
                return (int)done;
        }
        if (e == -EEXIST)       /* populated behind our back (a REMAP moved it here) */
                region_mark(r, page, 1);
        return e;
}

/* Unregister n regions from rstart for native jobs, within the VMA budget:
 * 0, -EBUSY past the budget, or the ioctl's -errno. */
static int unregister_native(struct client *c, uint64_t rstart, unsigned n)
{
        if (c->unregistered + n > MAX_UNREGISTERED)
                return -EBUSY;
        int e = region_unregister(c, rstart, (uint64_t)n << REGION_SHIFT);
        if (e == 0)
                c->unregistered += n;
        return e;
}

/* Queue the native job of an unregistered region. Out of memory, nobody
 * will register it again: it stays with the kernel, never promoted by us. */
static int queue_native(struct client *c, struct region *r)
{
        r->flags |= REGION_F_NATIVE;
        if (promote_region(c, r, true, 0) == 0)
                return 0;
        c->unregistered--;
        r->state = REGION_RESERVED;
        r->flags |= REGION_F_NO_PROMOTE;
        return -ENOMEM;
}

/*
 * Regions [idx, idx + n) were unregistered ahead of a sequential stream:
 * record each and queue its native job (the worker waits for the stream to
 * get there; promote.c registers them again, touched or not).
 */
static void native_ahead(struct client *c, uint64_t idx, unsigned n)
{
        for (unsigned i = 0; i < n; i++) {
                struct region *r;
                if (region_add(&c->regions, idx + i, &r) == 0) {
                        r->flags |= REGION_F_NATIVE | REGION_F_AHEAD;
                        /* the stream gets there in about i + 1 region times */
                        if (promote_region(c, r, true, now_ns() + (i + 1) * AHEAD_REGION_NS) == 0)
                                continue;
                        region_remove(&c->regions, r);
                }
                /* Out of memory: leave the rest to the kernel for good. */
                uint64_t start = (idx + i) << REGION_SHIFT;
                c->unregistered -= n - i;
                fault_drop_span(c, start, start + ((uint64_t)(n - i) << REGION_SHIFT));
                return;
        }
}

/*
 * A region reached the threshold. Collapse it unregistered: the kernel fills
 * the holes with zeros itself, and the client's faults in them meanwhile are
 * ordinary kernel faults; the job registers it again (promote.c). Past the
 * VMA budget, fill the holes with copies and collapse in place (registered).
 */
static void promote_threshold(struct client *c, struct region *r, uint64_t rstart)
{
        if (unregister_native(c, rstart, 1) == 0)
                queue_native(c, r);
        else
                promote_region(c, r, false, 0);
}

static void handle_pagefault(struct client *c, uint64_t addr, uint64_t t0)
{
        struct manager *m = c->m;
        uint64_t page_addr = addr & ~(HP_PAGE_SIZE - 1);
        uint64_t idx = page_addr >> REGION_SHIFT, rstart = idx << REGION_SHIFT, rend = rstart + HP_REGION_SIZE;
        unsigned page = (unsigned)((page_addr - rstart) >> PAGE_SHIFT_4K);
        struct range *rg = range_find(&c->ranges, page_addr);
        struct region *r;
        int e;

        COUNT(c, faults_served, 1);
        if (rg && rg->backend == HP_RANGE_HUGETLB) {
                hugetlb_fault(c, addr, t0);     /* hugetlb.c: one 2 MiB copy */
                return;
        }
        if (!rg) {
                /* Registered by the kernel but not by us: an mremap grew a range. */
                serve_page(c, page_addr);
                return;
        }
        bool whole = rg->start <= rstart && rg->end >= rend;
        unsigned threshold = rg->threshold ? rg->threshold : c->threshold;
        r = region_lookup(&c->regions, idx);
        if (!r) {
                const struct region *prev2 = rg->start <= rstart - 2 * HP_REGION_SIZE ? region_lookup(&c->regions, idx - 2) : NULL;
                const struct region *prev = rg->start <= rstart - HP_REGION_SIZE ? region_lookup(&c->regions, idx - 1) : NULL;
                const struct region *next = rg->end >= rend + HP_REGION_SIZE ? region_lookup(&c->regions, idx + 1) : NULL;
                enum promote_action a = whole ? region_first_fault_action(prev2, prev, next, page, c->dense_predict)
                                              : PROMOTE_NONE;
                e = region_add(&c->regions, idx, &r);
                if (e < 0) {
                        serve_page(c, page_addr);
                        return;
                }
                if (a == PROMOTE_NATIVE) {
                        /* Dense fast path: let the kernel install a THP at
                         * this fault, and at the next regions of the stream. */
                        unsigned ahead = region_native_ahead(&c->regions, idx, rg->start >> REGION_SHIFT,
                                                             rg->end >> REGION_SHIFT, NATIVE_AHEAD_MAX);
                        if (c->unregistered + 1 + ahead > MAX_UNREGISTERED)
                                ahead = 0;
                        e = unregister_native(c, rstart, 1 + ahead);
                        if (e == 0) {
                                wake(c, page_addr, HP_PAGE_SIZE);
                                native_ahead(c, idx + 1, ahead);
                                if (queue_native(c, r) == 0) {
                                        uint64_t dt = now_ns() - t0;
                                        histogram_add(&c->c.fault_latency_ns, dt);
                                        histogram_add(&m->c.fault_latency_ns, dt);
                                }
                                return;
                        }
                        if (e == -ENOENT || e == -ESRCH) {
                                region_remove(&c->regions, r);
                                wake(c, page_addr, HP_PAGE_SIZE);
                                return;
                        }
                        log_debug_errno(e, "client %d: unregister %#" PRIx64 " for a native THP: %m", c->pid, rstart);
                }
        }

        unsigned limit = rg->end < rend ? (unsigned)((rg->end - rstart) >> PAGE_SHIFT_4K) : HP_REGION_PAGES;
        unsigned n = region_window(r, page, limit, c->max_window);
        if (r->state == REGION_HUGE) {
                /* A fault in a region we believe huge: either a stale message
                 * (the copy finds the page: -EEXIST) or the THP did not happen
                 * (native fault or collapse failed): then it is an ordinary
                 * reservation again, with unknown pages populated. */
                memset(r->bits, 0, sizeof(r->bits));
                r->populated = 0;
                n = 1;
        }
        e = copy_window(c, r, rstart, page, n);
        if (e > 0) {
                COUNT(c, pages_populated, (unsigned)e);
                if (r->state == REGION_HUGE)
                        r->state = REGION_RESERVED;
        } else {
                if (r->state == REGION_HUGE)
                        region_fill(r);
                /* -EEXIST (page already there), -EAGAIN (event in flight),
                 * -ENOENT (unregistered or unmapped meanwhile): the thread
                 * must retry on its own. A wake too many costs a syscall; one
                 * too few hangs the thread forever. */
                wake(c, page_addr, HP_PAGE_SIZE);
        }
        uint64_t dt = now_ns() - t0;
        histogram_add(&c->c.fault_latency_ns, dt);
        histogram_add(&m->c.fault_latency_ns, dt);

        if (region_should_promote(r, threshold, whole))
                promote_threshold(c, r, rstart);
}

struct span {
        struct client *c;
        uint64_t start, end;
        bool drop;      /* drop whole-region records (unmap) vs clear pages (remove) */
};

static void span_region(struct region_table *t, struct region *r, void *ud)
{
        struct span *s = ud;
        uint64_t rstart = r->idx << REGION_SHIFT, rend = rstart + HP_REGION_SIZE;
        uint64_t lo = s->start > rstart ? s->start : rstart, hi = s->end < rend ? s->end : rend;

        if (r->state == REGION_PROMOTING) {
                r->flags |= REGION_F_GONE;      /* the worker's report is dropped */
                return;
        }
        if (lo == rstart && hi == rend) {
                if (r->state == REGION_RESERVED && r->populated < HP_REGION_PAGES)
                        COUNT(s->c, reservations_released, 1);
                region_remove(t, r);
                return;
        }
        unsigned first = (unsigned)((lo - rstart) >> PAGE_SHIFT_4K);
        unsigned n = (unsigned)((hi - lo + HP_PAGE_SIZE - 1) >> PAGE_SHIFT_4K);
        region_clear(r, first, n);
        if (r->state == REGION_HUGE)
                r->state = REGION_RESERVED;     /* the kernel split the THP */
        if (r->populated == 0 && !s->drop) {
                region_remove(t, r);
                return;
        }
}

/* Forget records for [start, end): they describe memory that is gone. */
void fault_drop_span(struct client *c, uint64_t start, uint64_t end)
{
        struct span s = { .c = c, .start = start, .end = end, .drop = true };
        if (range_remove_span(&c->ranges, start, end) < 0)
                log_warning("client %d: out of memory trimming ranges", c->pid);
        region_foreach_in(&c->regions, start >> REGION_SHIFT, (end + HP_REGION_SIZE - 1) >> REGION_SHIFT,
                          span_region, &s);
}

static void handle_remove(struct client *c, uint64_t start, uint64_t end)
{
        struct span s = { .c = c, .start = start, .end = end, .drop = false };
        region_foreach_in(&c->regions, start >> REGION_SHIFT, (end + HP_REGION_SIZE - 1) >> REGION_SHIFT,
                          span_region, &s);
}

struct move {
        struct region **v;
        size_t n, cap;
};

static void collect(struct region_table *t, struct region *r, void *ud)
{
        struct move *mv = ud;
        if (mv->n < mv->cap)
                mv->v[mv->n++] = r;
}

static void handle_remap(struct client *c, uint64_t from, uint64_t to, uint64_t len)
{
        struct range *old = range_find(&c->ranges, from);
        struct range nr = { .start = to, .end = to + len, .threshold = old ? old->threshold : 0,
                            .backend = old ? old->backend : HP_RANGE_ANON };
        uint64_t delta = to - from;

        log_debug("client %d: remap %#" PRIx64 " -> %#" PRIx64 " (%" PRIu64 " bytes)", c->pid, from, to, len);
        /* Whole region records move along when the move keeps 2 MiB alignment. */
        if ((delta & (HP_REGION_SIZE - 1)) == 0 && len >= HP_REGION_SIZE) {
                uint64_t lo = (from + HP_REGION_SIZE - 1) >> REGION_SHIFT, hi = (from + len) >> REGION_SHIFT;
                struct move mv = { .cap = c->regions.count };
                mv.v = mv.cap ? calloc(mv.cap, sizeof(*mv.v)) : NULL;
                if (mv.v) {
                        region_foreach_in(&c->regions, lo, hi, collect, &mv);
                        fault_drop_span(c, to, to + len);       /* whatever was there is gone */
                        for (size_t i = 0; i < mv.n; i++) {
                                struct region *r = mv.v[i], *nr2;
                                if (r->state == REGION_PROMOTING)
                                        continue;
                                if (region_add(&c->regions, r->idx + (delta >> REGION_SHIFT), &nr2) == 0) {
                                        uint64_t keep = nr2->idx;
                                        *nr2 = *r;
                                        nr2->idx = keep;
                                }
                        }
                        free(mv.v);
                }
        }
        fault_drop_span(c, from, from + len);
        if (range_add(&c->ranges, &nr) < 0) {
                fault_drop_span(c, to, to + len);
                if (range_add(&c->ranges, &nr) < 0)
                        log_warning("client %d: cannot record remapped range %#" PRIx64, c->pid, to);
        }
}

void fault_uffd_ready(struct client *c)
{
        struct uffd_msg msgs[MSGS_PER_READ];

        for (int i = 0; i < READS_PER_WAKEUP && c->state == CLIENT_READY; i++) {
                ssize_t n = read(c->uffd, msgs, sizeof(msgs));
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        client_disconnect(c, "userfaultfd read failed");
                        return;
                }
                uint64_t t0 = now_ns();
                size_t k = (size_t)n / sizeof(msgs[0]);
                for (size_t j = 0; j < k && c->state == CLIENT_READY; j++) {
                        struct uffd_msg *msg = &msgs[j];
                        switch (msg->event) {
                        case UFFD_EVENT_PAGEFAULT:
                                handle_pagefault(c, msg->arg.pagefault.address, t0);
                                break;
                        case UFFD_EVENT_UNMAP:
                                fault_drop_span(c, msg->arg.remove.start, msg->arg.remove.end);
                                break;
                        case UFFD_EVENT_REMOVE:
                                handle_remove(c, msg->arg.remove.start, msg->arg.remove.end);
                                break;
                        case UFFD_EVENT_REMAP:
                                handle_remap(c, msg->arg.remap.from, msg->arg.remap.to, msg->arg.remap.len);
                                break;
                        default:
                                log_debug("client %d: ignoring uffd event %u", c->pid, msg->event);
                        }
                }
                if (k < MSGS_PER_READ)
                        return;
        }
        if (c->state == CLIENT_READY)
                watch_defer(&c->w_uffd);        /* more to read: after the others */
}
