/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * region.h: one record per 2 MiB-aligned block of client memory (a
 * reservation) and the per-client table that finds them by address.
 *
 * Pure logic: no system calls, no logging, so it is unit-tested with
 * fabricated input (tests/unit/test-region.c). The decisions taken on
 * these records are in policy.h. Records have stable addresses (the
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
        REGION_F_GONE = 1 << 1,       /* unmapped or replaced while a worker had it */
        REGION_F_AHEAD = 1 << 2,      /* native, ahead of a sequential stream: maybe never touched */
        REGION_F_HELD = 1 << 3,       /* a promotion was held back (headroom, pressure, bloat): counted once */
        REGION_F_DENSE = 1 << 4,      /* handed to the kernel as dense (first fault, or ahead of a stream) */
        REGION_F_UNARMED = 1 << 5,    /* HUGE, still handed to the kernel: registered again with its run */
};

struct region {
        uint64_t idx;           /* address >> REGION_SHIFT */
        uint8_t state;          /* enum region_state */
        uint8_t flags;          /* REGION_F_* */
        uint16_t populated;     /* bits set in `bits` */
        uint16_t next_page;     /* page after the last served window (sequential detection) */
        uint16_t window;        /* size of the last served window, pages */
        uint16_t bloat;         /* HUGE: pages its promotion zero-filled (512 - pages in use then) */
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

#endif
