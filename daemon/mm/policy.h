/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * policy.h: every promotion decision, as pure functions (no system calls,
 * no logging; unit-tested with fabricated records in tests/unit/test-policy.c):
 *  - which policy a client has, from its layers (policy_resolve);
 *  - what to do at the first fault in a region (dense prediction);
 *  - whether a region has reached its threshold, and a range's threshold
 *    learned from how dense its regions turned out;
 *  - how many regions to hand to the kernel ahead of a sequential stream;
 *  - whether the VMA budget allows handing more regions to the kernel.
 *
 * Precedence, the same on every path (connect, reload, the client's own
 * request, D-Bus SetPolicy): the config file's defaults (and the command
 * line, which overrides the file), then its [Program:NAME] section, then
 * what the client asked for (HUGEPAGED_THRESHOLD, libhugepaged), then
 * D-Bus SetPolicy; a later layer overrides what it sets and leaves the rest.
 * Dense prediction is the config's to allow: a client or SetPolicy may turn
 * it off (or back on up to what the config allows), never on against it.
 */
#ifndef HP_POLICY_H
#define HP_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "region.h"

struct policy {
        uint32_t threshold;     /* pages in use (1..512) before a region is promoted */
        uint32_t max_window;    /* largest run of pages served per fault */
        bool dense_predict;     /* promote at a region's first fault when it looks dense */
};

/* One layer: what it sets (0 or -1: leaves it to the layers below). */
struct policy_layer {
        uint32_t threshold;     /* 0: unset */
        uint32_t max_window;    /* 0: unset */
        int8_t dense_predict;   /* -1: unset, 0: off, 1: on (as far as the config allows) */
};

#define POLICY_LAYER_UNSET ((struct policy_layer){ .dense_predict = -1 })

/* The layers above the config's defaults, per client. */
struct policy_layers {
        struct policy_layer program;    /* [Program:NAME] of the config in force */
        struct policy_layer client;     /* the client's own request */
        struct policy_layer admin;      /* D-Bus SetPolicy */
};

struct policy policy_resolve(const struct policy *defaults, const struct policy_layers *l);
/* Did the client or an administrator set anything (kept across reloads)? */
bool policy_explicit(const struct policy_layers *l);

/* The threshold of a range: its own (0: none) or the client's. */
static inline unsigned policy_threshold(uint32_t range_threshold, const struct policy *p)
{
        return range_threshold ? range_threshold : p->threshold;
}

/*
 * The threshold of a region, learned from the regions already decided in
 * its range: once POLICY_LEARN_MIN regions were made there and
 * POLICY_LEARN_DENSE_PCT% or more of them were promoted, the range is dense
 * (a heap filled region after region, in any order inside each) and its next
 * regions are promoted at an eighth of `threshold` (at least 1): fewer 4 KiB
 * faults served before each becomes huge. A range with too few regions of its
 * own (allocators map many small ones) goes by the client's ranges together.
 * A sparse range, whose regions never reach the threshold, or a mixed one,
 * keeps it. Only regions promoted at the full threshold (or dense at their
 * first fault) count as promoted: one promoted at the learned threshold is
 * left out of the counts (policy_density_note), so sparse regions made
 * meanwhile turn the learning off again.
 */
#define POLICY_LEARN_MIN 8
#define POLICY_LEARN_DENSE_PCT 75

struct policy_density {
        uint32_t made;          /* regions first faulted */
        uint32_t promoted;      /* of those, promoted as dense */
};

unsigned policy_learned_threshold(unsigned threshold, const struct policy_density *range,
                                  const struct policy_density *client);

enum policy_density_event {
        POLICY_REGION_MADE,
        POLICY_REGION_DENSE,    /* promoted at the full threshold, or at its first fault */
        POLICY_REGION_LEARNED,  /* promoted at a learned (lower) threshold */
};
/* Count a region's event in d (saturating; promoted never above made). */
void policy_density_note(struct policy_density *d, enum policy_density_event e);

enum promote_action {
        PROMOTE_NONE,           /* serve at 4 KiB */
        PROMOTE_NATIVE,         /* hand the region to the kernel: it installs a THP at the fault */
};

/*
 * At the first fault in a region, whether to promote at once. prev2/prev/
 * next: the records of the regions two before, one before and one after, in
 * the same range (NULL if none); page: the faulting page in the region.
 */
enum promote_action policy_first_fault(const struct region *prev2, const struct region *prev,
                                       const struct region *next, unsigned page, bool dense_predict);

/* After serving: should this region be promoted now? whole_region: the
 * range covers the whole 2 MiB. */
bool policy_should_promote(const struct region *r, unsigned threshold, bool whole_region);

/*
 * How many regions after `idx` to hand to the kernel along with it when a
 * sequential stream reaches `idx`: as many as the stream has gone through
 * promoted regions just before it (up to `max`), stopping at the first
 * region that has a record or reaches `end_idx` (exclusive: the first region
 * index past the range). Like readahead: a stream that went through 8
 * regions will likely go through 8 more.
 */
unsigned policy_native_ahead(const struct region_table *t, uint64_t idx, uint64_t first_idx, uint64_t end_idx,
                             unsigned max);

/* Regions of one client handed to the kernel at a time: each may split a
 * VMA in three until it is registered again, and the client's own mmap()
 * calls must never meet vm.max_map_count because of us. */
#define POLICY_MAX_UNREGISTERED 256
#define POLICY_NATIVE_AHEAD_MAX 64      /* regions handed over ahead of a stream */

/*
 * Cgroup headroom: a promotion that adds `charge` bytes goes ahead only if
 * the room left under the client's cgroup limit (UINT64_MAX: no limit)
 * still holds the margin, the charge, and `future`: what the client's
 * managed memory may still take at 4 KiB (policy_future_4k). A program that
 * fits at 4 KiB must never be pushed over its limit by a promotion.
 */
bool policy_headroom_allows(uint64_t room, uint64_t charge, uint64_t future, uint64_t margin);
/* The margin under a limit: the configured size or share of the limit, or
 * by default 10% of it or 64 MiB, whichever is less. */
uint64_t policy_margin(uint64_t limit, uint64_t margin_bytes, unsigned margin_percent);
/* What the regions of managed memory not touched yet may take at 4 KiB, at
 * the density of those touched so far (pages served per region made). */
uint64_t policy_future_4k(uint64_t managed_bytes, uint64_t regions_now, uint64_t regions_made,
                          uint64_t pages_served);
/* Bloat (zero-filled pages a promotion adds, the RFC's nr_thp_reserved): may
 * `adding` more pages go on top of `now`, under `cap` pages (UINT64_MAX: no cap)? */
static inline bool policy_bloat_allows(uint64_t now, uint64_t adding, uint64_t cap)
{
        return cap == UINT64_MAX || (adding <= cap && now <= cap - adding);
}

enum pressure_level {
        PRESSURE_NONE,
        PRESSURE_SOME,
        PRESSURE_HIGH,
};

#define PRESSURE_CALM_NS (5000ull * 1000000ull)

/* The memory pressure level (pressure.h) after `cur`, from the causes seen
 * now (MemAvailable under `low`, or a PSI trigger with MemAvailable under
 * twice `low`) and how long ago a cause was last seen: rises at once, falls
 * one step after a calm spell with room to spare. */
int policy_pressure_next(int cur, bool psi_fired, uint64_t available, uint64_t low, uint64_t since_cause_ns);

/* May n more regions be handed to the kernel, with `unregistered` out now? */
static inline bool policy_budget_allows(unsigned unregistered, unsigned n)
{
        return unregistered + n <= POLICY_MAX_UNREGISTERED;
}

#endif
