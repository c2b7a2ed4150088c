/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault.c: reads a client's userfaultfd and dispatches what it finds: each
 * page fault to the backend of the range it falls in (backend.h), and the
 * non-cooperative events (UNMAP, REMOVE, REMAP) to the range and region
 * records they change, then to the backends. Also the uffd operations every
 * backend uses (fault.h). Runs on a fault thread (fault-threads.c) with the
 * client's lock held, and touches nothing but that client, atomics and
 * locked queues (promotion jobs); must never block: every ioctl here is a
 * bounded kernel operation, collapses go to promote.c.
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
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "backend.h"
#include "client.h"
#include "compat.h"
#include "fault.h"
#include "log.h"
#include "manager.h"

#define MSGS_PER_READ 64
#define READS_PER_WAKEUP 16     /* then the client goes behind the others ready */

void uffd_wake(struct client *c, uint64_t addr, uint64_t len)
{
        struct uffdio_range r = { .start = addr, .len = len };
        if (ioctl(c->fds->uffd, UFFDIO_WAKE, &r) < 0 && errno != ENOENT && errno != ESRCH)
                log_debug_errno(errno, "client %d: UFFDIO_WAKE %#" PRIx64 ": %m", c->pid, addr);
}

int uffd_unregister(struct client *c, uint64_t start, uint64_t len)
{
        struct uffdio_range r = { .start = start, .len = len };
        return ioctl(c->fds->uffd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

int uffd_copy_zero(struct client *c, uint64_t dst, uint64_t len, uint64_t *copied, bool wake)
{
        struct uffdio_copy cp = { .dst = dst, .src = (uint64_t)(uintptr_t)c->m->zero_page, .len = len,
                                  .mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE };
        int e = ioctl(c->fds->uffd, UFFDIO_COPY, &cp) < 0 ? -errno : 0;
        if (copied)
                *copied = cp.copy > 0 ? (uint64_t)cp.copy : 0;
        return e;
}

int uffd_continue(struct client *c, uint64_t dst, uint64_t len, bool wake)
{
        struct uffdio_continue cn = { .range = { .start = dst, .len = len },
                                      .mode = wake ? 0 : UFFDIO_CONTINUE_MODE_DONTWAKE };
        return ioctl(c->fds->uffd, UFFDIO_CONTINUE, &cn) < 0 ? -errno : 0;
}

void fault_served(struct client *c, uint64_t t0)
{
        histogram_add(&c->c.fault_latency_ns, now_ns() - t0);
}

void fault_serve_page(struct client *c, uint64_t page_addr)
{
        if (uffd_copy_zero(c, page_addr, HP_PAGE_SIZE, NULL, true) == 0) {
                c->c.pages_populated++;
                return;
        }
        uffd_wake(c, page_addr, HP_PAGE_SIZE);
}

static void handle_pagefault(struct client *c, uint64_t addr, uint64_t t0)
{
        uint64_t page_addr = addr & ~(HP_PAGE_SIZE - 1);
        struct range *rg = range_find(&c->ranges, page_addr);
        const struct backend *b = rg ? backend_of(rg->backend) : NULL;

        c->c.faults_served++;
        if (!b) {
                /* the kernel kept a range registered that we never did
                 * (an mremap grew one) */
                fault_serve_page(c, page_addr);
                return;
        }
        b->fault(c, rg, addr, t0);
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
        if ((r->flags & REGION_F_UNARMED) && s->c->unregistered) {
                s->c->unregistered--;           /* no longer to be registered again */
                r->flags &= ~REGION_F_UNARMED;
        }
        if (lo == rstart && hi == rend) {
                if (r->state == REGION_RESERVED && r->populated < HP_REGION_PAGES)
                        s->c->c.reservations_released++;
                client_bloat_drop(s->c, r);
                region_remove(t, r);
                return;
        }
        unsigned first = (unsigned)((lo - rstart) >> PAGE_SHIFT_4K);
        unsigned n = (unsigned)((hi - lo + HP_PAGE_SIZE - 1) >> PAGE_SHIFT_4K);
        region_clear(r, first, n);
        client_bloat_drop(s->c, r);
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
        /* a move of memory we never registered (the kernel kept part of a
         * range registered) keeps the kind of the range it came from, or 0 */
        struct range nr = { .start = to, .end = to + len, .threshold = old ? old->threshold : 0,
                            .backend = old ? old->backend : 0 };
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
                                if (r->state == REGION_PROMOTING || (r->flags & REGION_F_UNARMED))
                                        continue;
                                if (region_add(&c->regions, r->idx + (delta >> REGION_SHIFT), &nr2) == 0) {
                                        uint64_t keep = nr2->idx;
                                        *nr2 = *r;
                                        nr2->idx = keep;
                                        client_bloat_add(c, nr2);      /* the original's goes below */
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

int fault_uffd_ready(struct client *c)
{
        struct uffd_msg msgs[MSGS_PER_READ];

        for (int i = 0; i < READS_PER_WAKEUP && c->state == CLIENT_READY; i++) {
                ssize_t n = read(c->fds->uffd, msgs, sizeof(msgs));
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        return -errno;
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
                                backends_span_gone(c, msg->arg.remove.start, msg->arg.remove.end);
                                break;
                        case UFFD_EVENT_REMOVE:
                                handle_remove(c, msg->arg.remove.start, msg->arg.remove.end);
                                backends_span_gone(c, msg->arg.remove.start, msg->arg.remove.end);
                                break;
                        case UFFD_EVENT_REMAP:
                                handle_remap(c, msg->arg.remap.from, msg->arg.remap.to, msg->arg.remap.len);
                                break;
                        default:
                                log_debug("client %d: ignoring uffd event %u", c->pid, msg->event);
                        }
                }
                if (k < MSGS_PER_READ)
                        return 0;
        }
        return 0;       /* more to read, maybe: the caller re-arms it behind the others */
}
