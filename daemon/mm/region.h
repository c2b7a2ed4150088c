/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * region.h: one record per 2 MiB-aligned block of client memory (a
 * reservation) and the per-client table that finds them by address.
 *
 * Pure logic: no system calls, no logging, so it is unit-tested with
 * fabricated input (tests/test-region.c). Records have stable addresses (the
 * table holds pointers), 88 bytes each (< 0.01% of the 2 MiB they describe).
 */
#ifndef HP_REGION_H
#define HP_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hugepaged-protocol.h"

#define REGION_SHIFT 21
#define PAGE_SHIFT_4K 12

enum region_state {
        REGION_RESERVED = 1,    /* served at 4 KiB by the daemon */
        REGION_PROMOTING,       /* handed to a promotion worker */
        REGION_HUGE,            /* a THP, registered again (no faults expected) */
};

enum {
        REGION_F_NO_PROMOTE = 1 << 0, /* promotion failed: stay at 4 KiB */
        REGION_F_NATIVE = 1 << 1,     /* promoted by a native THP fault (dense path) */
        REGION_F_GONE = 1 << 2,       /* unmapped or replaced while a worker had it */
        REGION_F_AHEAD = 1 << 3,      /* native, ahead of a sequential stream: maybe never touched */
};

struct region {
        uint64_t idx;           /* address >> REGION_SHIFT */
        uint8_t state;          /* enum region_state */
        uint8_t flags;          /* REGION_F_* */
        uint16_t populated;     /* bits set in `bits` */
        uint16_t next_page;     /* page after the last served window (sequential detection) */
        uint16_t window;        /* size of the last served window, pages */
        uint64_t bits[HP_REGION_PAGES / 64];
};

struct region_table {
        struct region **slots;  /* open addressing, linear probing, NULL = free */
        size_t cap;             /* power of two or 0 */
        size_t count;
};

#define REGION_TABLE_NULL ((struct region_table){ 0 })

void region_table_deinit(struct region_table *t);
struct region *region_lookup(const struct region_table *t, uint64_t idx);
/* Insert a new RESERVED record; -EEXIST if present, -ENOMEM. */
int region_add(struct region_table *t, uint64_t idx, struct region **ret);
/* Remove and free a record (r must be in t). */
void region_remove(struct region_table *t, struct region *r);
/* Call fn on every record with lo <= idx < hi; fn may remove the record it is given. */
void region_foreach_in(struct region_table *t, uint64_t lo, uint64_t hi,
                       void (*fn)(struct region_table *t, struct region *r, void *ud), void *ud);

static inline bool region_test(const struct region *r, unsigned page)
{
        return r->bits[page / 64] & (1ull << (page % 64));
}
/* Mark pages [first, first+n) populated; returns how many were newly set. */
unsigned region_mark(struct region *r, unsigned first, unsigned n);
/* Clear pages [first, first+n); returns how many were cleared. */
unsigned region_clear(struct region *r, unsigned first, unsigned n);
void region_fill(struct region *r);

/*
 * Size of the window to serve for a fault at `page`: grows x2 (up to
 * max_window) while faults in the region are sequential, else 1; clipped at
 * the first populated page and at `limit` (first page not in the range).
 * Updates the sequential-detection state. Returns >= 1.
 */
unsigned region_window(struct region *r, unsigned page, unsigned limit, unsigned max_window);

enum promote_action {
        PROMOTE_NONE,
        PROMOTE_COLLAPSE,       /* unregister, MADV_COLLAPSE, register again */
        PROMOTE_NATIVE,         /* unregister + wake: the kernel installs a THP */
};

/*
 * Decide, at the first fault in a region, whether to promote at once.
 * prev2/prev/next: the records of the regions two before, one before and one
 * after, in the same range (NULL if none).
 */
enum promote_action region_first_fault_action(const struct region *prev2, const struct region *prev,
                                              const struct region *next, unsigned page, bool dense_predict);

/* After serving: should this region be promoted now? */
bool region_should_promote(const struct region *r, unsigned threshold, bool whole_region);

/*
 * How many regions after `idx` to hand to the kernel along with it when a
 * sequential stream reaches `idx`: as many as the stream has gone through
 * promoted regions just before it (up to `max`), stopping at the first
 * region that has a record or reaches `end_idx` (exclusive: the first region
 * index past the range). Like readahead: a stream that went through 8
 * regions will likely go through 8 more.
 */
unsigned region_native_ahead(const struct region_table *t, uint64_t idx, uint64_t first_idx, uint64_t end_idx,
                             unsigned max);

const char *region_state_name(int state);

#endif
