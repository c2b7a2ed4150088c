/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * anon.c: the anonymous backend (HP_RANGE_ANON), the default: private
 * anonymous memory, registered MISSING. A fault is served with a window of
 * 4 KiB zero pages (one UFFDIO_COPY, growing while the region is written in
 * order) into the region's reservation record; a region reaching its
 * threshold is collapsed into a THP off the fault path (promote.c), and a
 * region that looks dense at its first fault is handed to the kernel, which
 * installs a THP there itself (with the regions a sequential stream will
 * reach next). The decisions are policy.c's; this file carries them out.
 * A fault thread, or the main thread, with the client locked; never blocks.
 *
 * Kernel behaviour relied on: collapse refuses pte_none entries in
 * uffd-armed VMAs, so a region is collapsed unregistered (the kernel fills
 * the holes) or after its holes are filled with copies (past the VMA budget).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "backend.h"
#include "client.h"
#include "compat.h"
#include "fault.h"
#include "log.h"
#include "manager.h"
#include "memcg.h"
#include "policy.h"
#include "pressure.h"
#include "promote.h"
#include "util.h"
#include "vma.h"

#define AHEAD_REGION_NS 100000  /* a stream writes 2 MiB in no less than this */

/* Names of anonymous VMAs that may be managed. */
static int anon_name_ok(const char *name)
{
        return name[0] == '\0' || strcmp(name, "[heap]") == 0 || strncmp(name, "[anon:", 6) == 0;
}

static int check_text(pid_t pid, uint64_t start, uint64_t end, char *why, size_t whylen)
{
        char path[64], line[512];
        _cleanup_(fclosep_) FILE *f = NULL;
        uint64_t covered = start;

        snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (covered < end && fgets(line, sizeof(line), f)) {
                uint64_t lo, hi, off;
                char perms[8], dev[16], name[256] = "";
                unsigned long ino;
                if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %15s %lu %255[^\n]", &lo, &hi,
                           perms, &off, dev, &ino, name) < 6)
                        continue;
                if (hi <= covered)
                        continue;
                if (lo > covered)
                        break;
                char *n = name;
                while (*n == ' ')
                        n++;
                if (perms[3] != 'p' || ino != 0 || !anon_name_ok(n)) {
                        snprintf(why, whylen, "%#" PRIx64 "-%#" PRIx64 " is not private anonymous memory (%s %s)",
                                 lo, hi, perms, n[0] ? n : "shared");
                        return -EFAULT;
                }
                covered = hi;
        }
        if (covered < end) {
                snprintf(why, whylen, "%#" PRIx64 " is not mapped", covered);
                return -EFAULT;
        }
        return 0;
}

static int anon_ok(const struct procmap_query *q, const char *name, char *why, size_t whylen)
{
        if ((q->vma_flags & PROCMAP_QUERY_VMA_SHARED) || q->inode != 0 || q->dev_major || q->dev_minor ||
            !anon_name_ok(name)) {
                snprintf(why, whylen, "%#llx-%#llx is not private anonymous memory (%s)",
                         (unsigned long long)q->vma_start, (unsigned long long)q->vma_end,
                         name[0] ? name : (q->vma_flags & PROCMAP_QUERY_VMA_SHARED) ? "shared" : "file");
                return -EFAULT;
        }
        return 0;
}

static int check_anon(int maps_fd, pid_t pid, uint64_t start, uint64_t end, char *why, size_t whylen)
{
        int r = maps_fd < 0 ? -ENOTTY : vma_walk(maps_fd, start, end, anon_ok, "anonymous memory", why, whylen);
        return r == -ENOTTY ? check_text(pid, start, end, why, whylen) : r;
}


/*
 * Copy `n` zero pages at page `page` of region r. Returns pages copied
 * (the faulting page is the first, so > 0 means it is served) or -errno.
 */
static int copy_window(struct client *c, struct region *r, uint64_t rstart, unsigned page, unsigned n)
{
        uint64_t copied = 0;
        int e = uffd_copy_zero(c, rstart + ((uint64_t)page << PAGE_SHIFT_4K), (uint64_t)n << PAGE_SHIFT_4K,
                               &copied, true);
        if (e == 0 || (e == -EAGAIN && copied > 0)) {
                unsigned done = e == 0 ? n : (unsigned)(copied >> PAGE_SHIFT_4K);
                region_mark(r, page, done);
                return (int)done;
        }
        if (e == -EEXIST)       /* populated behind our back (a REMAP moved it here) */
                region_mark(r, page, 1);
        return e;
}

/* May n more regions be handed to the kernel? Those waiting to be
 * registered again with their run (promote.c) are registered now if that
 * makes room. */
static bool budget_room(struct client *c, unsigned n)
{
        if (policy_budget_allows(c->unregistered, n))
                return true;
        promote_rearm_pending(c);
        return policy_budget_allows(c->unregistered, n);
}

/* Unregister n regions from rstart for native jobs, within the VMA budget:
 * 0, -EBUSY past the budget, or the ioctl's -errno. */
static int unregister_native(struct client *c, uint64_t rstart, unsigned n)
{
        if (!budget_room(c, n))
                return -EBUSY;
        int e = uffd_unregister(c, rstart, (uint64_t)n << REGION_SHIFT);
        if (e == 0)
                c->unregistered += n;
        return e;
}

/* Queue the native job of an unregistered region. Out of memory, nobody
 * will register it again: it stays with the kernel, never promoted by us. */
static int queue_native(struct client *c, struct region *r)
{
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
                        r->flags |= REGION_F_AHEAD | REGION_F_DENSE;
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

static uint64_t cap_pages(const struct config_cap *cap, uint64_t of_pages)
{
        if (!cap->set)
                return UINT64_MAX;
        return cap->is_percent ? of_pages * cap->percent / 100 : cap->bytes >> PAGE_SHIFT_4K;
}

/*
 * May `n` regions with `in_use` pages in use between them become huge now?
 * Not under memory pressure; not past a bloat cap (a native hand-off counts
 * as a whole region of bloat when a cap is set: the stream's pages are a
 * prediction); and only with room under the client's cgroup limit for the
 * charge, the margin and what its managed memory may still take at 4 KiB.
 * A region held back (r, if given) is counted once and asked again at its
 * next fault. On yes, the charge is taken off the cgroup's room.
 * `early`: below the full threshold (a threshold learned from the range):
 * the room must then hold every region not touched yet at 2 MiB, since
 * promoting early is what would make them so; the density of what was served
 * so far no longer says what they would take at 4 KiB.
 */
static bool may_promote(struct client *c, struct region *r, unsigned n, unsigned in_use, bool native, bool early)
{
        struct manager *m = c->m;
        uint64_t *held = NULL;
        uint64_t pages = (uint64_t)n * HP_REGION_PAGES, bloat = pages - in_use;
        uint64_t cap = cap_pages(&m->cfg.max_bloat_per_client, c->c.pages_populated);
        uint64_t gcap = cap_pages(&m->cfg.max_bloat, pressure_mem_total(m) >> PAGE_SHIFT_4K);

        if (native && (cap != UINT64_MAX || gcap != UINT64_MAX))
                bloat = pages;
        else if (native)
                bloat = 0;
        if (pressure_level(m) != PRESSURE_NONE)
                held = &c->c.skipped_pressure;
        else if (!policy_bloat_allows(c->bloat_pages, bloat, cap) || !policy_bloat_allows(manager_bloat_pages(m), bloat, gcap))
                held = &c->c.skipped_bloat;
        else {
                uint64_t now = now_ns(), limit;
                uint64_t room = memcg_room(&c->memcg, now, &limit);
                uint64_t margin = policy_margin(limit, m->cfg.headroom_margin.bytes, m->cfg.headroom_margin.percent);
                uint64_t future = early ? policy_future_4k(c->ranges.bytes, c->regions.count, 1, HP_REGION_PAGES)
                                        : policy_future_4k(c->ranges.bytes, c->regions.count, c->c.regions_made,
                                                           c->c.pages_populated);
                uint64_t charge = (pages - in_use) << PAGE_SHIFT_4K;
                if (!policy_headroom_allows(room, charge, future, margin))
                        held = &c->c.skipped_headroom;
                else
                        memcg_charge(&c->memcg, charge);
        }
        if (!held)
                return true;
        if (!r || !(r->flags & REGION_F_HELD))
                (*held)++;
        if (r)
                r->flags |= REGION_F_HELD;
        return false;
}

/*
 * A region reached the threshold. Collapse it unregistered: the kernel fills
 * the holes with zeros itself, and the client's faults in them meanwhile are
 * ordinary kernel faults; the job registers it again (promote.c). Past the
 * VMA budget, fill the holes with copies and collapse in place (registered).
 *
 * The first region of a range is always filled and collapsed in place, and
 * is never handed to the kernel otherwise either (the dense path needs
 * promoted regions before the fault, the stream's regions ahead come after
 * it): so a range always keeps a registered part. A range all unregistered
 * would be one VMA the kernel knows nothing of, and an mremap() (the shim's
 * realloc) would move it with no event: we would lose it. With a registered
 * part the unregistered regions split the VMA, the move fails with EFAULT,
 * and the shim asks for a SYNC and tries again.
 */
static void promote_threshold(struct client *c, const struct range *rg, struct region *r, uint64_t rstart)
{
        if (rstart > rg->start && unregister_native(c, rstart, 1) == 0)
                queue_native(c, r);
        else
                promote_region(c, r, false, 0);
}

/* What a region of rg turned out to be, for the thresholds learned in rg
 * and in the client's ranges together (policy_learned_threshold). */
static void density_note(struct client *c, struct range *rg, enum policy_density_event e)
{
        policy_density_note(&rg->density, e);
        policy_density_note(&c->density, e);
}

static void anon_fault(struct client *c, struct range *rg, uint64_t addr, uint64_t t0)
{
        uint64_t page_addr = addr & ~(HP_PAGE_SIZE - 1);
        uint64_t idx = page_addr >> REGION_SHIFT, rstart = idx << REGION_SHIFT, rend = rstart + HP_REGION_SIZE;
        unsigned page = (unsigned)((page_addr - rstart) >> PAGE_SHIFT_4K);
        struct region *r;
        int e;

        bool whole = rg->start <= rstart && rg->end >= rend;
        unsigned full = policy_threshold(rg->threshold, &c->policy), threshold = full;
        if (!rg->threshold && !c->layers.client.threshold && !c->layers.admin.threshold)
                threshold = policy_learned_threshold(full, &rg->density, &c->density);
        r = region_lookup(&c->regions, idx);
        if (!r) {
                const struct region *prev2 = rg->start <= rstart - 2 * HP_REGION_SIZE ? region_lookup(&c->regions, idx - 2) : NULL;
                const struct region *prev = rg->start <= rstart - HP_REGION_SIZE ? region_lookup(&c->regions, idx - 1) : NULL;
                const struct region *next = rg->end >= rend + HP_REGION_SIZE ? region_lookup(&c->regions, idx + 1) : NULL;
                enum promote_action a = whole ? policy_first_fault(prev2, prev, next, page, c->policy.dense_predict)
                                              : PROMOTE_NONE;
                e = region_add(&c->regions, idx, &r);
                if (e < 0) {
                        fault_serve_page(c, page_addr);
                        return;
                }
                c->c.regions_made++;
                if (whole)
                        density_note(c, rg, POLICY_REGION_MADE);
                if (a == PROMOTE_NATIVE && !may_promote(c, r, 1, 0, true, false))
                        a = PROMOTE_NONE;
                if (a == PROMOTE_NATIVE) {
                        /* Dense fast path: let the kernel install a THP at
                         * this fault, and at the next regions of the stream. */
                        unsigned ahead = policy_native_ahead(&c->regions, idx, rg->start >> REGION_SHIFT,
                                                             rg->end >> REGION_SHIFT, POLICY_NATIVE_AHEAD_MAX);
                        if (!budget_room(c, 1 + ahead) ||
                            (ahead && !may_promote(c, NULL, ahead, 0, true, false)))
                                ahead = 0;
                        e = unregister_native(c, rstart, 1 + ahead);
                        if (e == 0) {
                                density_note(c, rg, POLICY_REGION_DENSE);
                                r->flags |= REGION_F_DENSE;
                                uffd_wake(c, page_addr, HP_PAGE_SIZE);
                                native_ahead(c, idx + 1, ahead);
                                if (queue_native(c, r) == 0)
                                        fault_served(c, t0);
                                return;
                        }
                        if (e == -ENOENT || e == -ESRCH) {
                                region_remove(&c->regions, r);
                                uffd_wake(c, page_addr, HP_PAGE_SIZE);
                                return;
                        }
                        log_debug_errno(e, "client %d: unregister %#" PRIx64 " for a native THP: %m", c->pid, rstart);
                }
        }

        unsigned limit = rg->end < rend ? (unsigned)((rg->end - rstart) >> PAGE_SHIFT_4K) : HP_REGION_PAGES;
        unsigned n = region_window(r, page, limit, c->policy.max_window);
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
                c->c.pages_populated += (unsigned)e;
                client_bloat_drop(c, r);
                if (r->state == REGION_HUGE)
                        r->state = REGION_RESERVED;
        } else {
                if (r->state == REGION_HUGE)
                        region_fill(r);
                /* -EEXIST (page already there), -EAGAIN (event in flight),
                 * -ENOENT (unregistered or unmapped meanwhile): the thread
                 * must retry on its own. A wake too many costs a syscall; one
                 * too few hangs the thread forever. */
                uffd_wake(c, page_addr, HP_PAGE_SIZE);
        }
        fault_served(c, t0);

        bool early = r->populated < full;
        if (policy_should_promote(r, threshold, whole) && may_promote(c, r, 1, r->populated, false, early)) {
                density_note(c, rg, early ? POLICY_REGION_LEARNED : POLICY_REGION_DENSE);
                promote_threshold(c, rg, r, rstart);
        }
}


static int anon_register(struct client *c, const struct hp_range_req *req, char *why, size_t whylen)
{
        uint64_t start = req->addr, end = req->addr + req->length;
        int r = check_anon(c->maps_fd, c->pid, start, end, why, whylen);
        if (r < 0)
                return r;
        struct range rg = { .start = start, .end = end, .threshold = req->threshold, .backend = HP_RANGE_ANON };
        return client_register_range(c, &rg, UFFDIO_REGISTER_MODE_MISSING, 1ull << _UFFDIO_COPY, why, whylen);
}

/*
 * Still private anonymous memory, in a VMA inside the ranges we know: a
 * region handed to the kernel merges with its unregistered neighbours, and
 * at the edge of a range with the next range's (shim blocks abut), but a
 * mapping made over it since (an munmap there sends no event) would reach
 * out of them.
 */
static bool anon_rearm(struct client *c, const struct range *rg, uint64_t start, uint64_t len, char *why,
                       size_t whylen)
{
        uint64_t end = start + len, lo, hi;

        if (check_anon(c->maps_fd, c->pid, start, end, why, whylen) < 0)
                return false;
        for (uint64_t at = start; at < end; at = hi)
                if (vma_bounds(c->maps_fd, at, &lo, &hi) < 0 || !range_covers(&c->ranges, lo, hi)) {
                        snprintf(why, whylen, "its mapping reaches out of the ranges registered (range %#" PRIx64
                                 "-%#" PRIx64 ")", rg->start, rg->end);
                        return false;
                }
        struct uffdio_register reg = { .range = { .start = start, .len = len },
                                       .mode = UFFDIO_REGISTER_MODE_MISSING };
        if (ioctl(c->fds->uffd, UFFDIO_REGISTER, &reg) == 0)
                return true;
        snprintf(why, whylen, "UFFDIO_REGISTER: %s", strerror(errno));
        return false;
}

const struct backend backend_anon = {
        .name = "anon",
        .kind = HP_RANGE_ANON,
        .register_range = anon_register,
        /* copy-on-write of inherited pages is the kernel's; the child's
         * holes are served like any missing page */
        .fork_inherits = true,
        .fault = anon_fault,
        .rearm = anon_rearm,
};
