/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * region.c: reservation records and their table, and window growth. Pure
 * functions only (see region.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "region.h"

static inline size_t slot_of(uint64_t idx, size_t cap)
{
        /* Fibonacci hashing: consecutive indices spread over the table. */
        return (size_t)((idx * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

void region_table_deinit(struct region_table *t)
{
        for (size_t i = 0; i < t->cap; i++)
                free(t->slots[i]);
        free(t->slots);
        *t = REGION_TABLE_NULL;
}

struct region *region_lookup(const struct region_table *t, uint64_t idx)
{
        if (t->count == 0)
                return NULL;
        for (size_t i = slot_of(idx, t->cap);; i = (i + 1) & (t->cap - 1)) {
                struct region *r = t->slots[i];
                if (!r)
                        return NULL;
                if (r->idx == idx)
                        return r;
        }
}

static void insert_slot(struct region **slots, size_t cap, struct region *r)
{
        size_t i = slot_of(r->idx, cap);
        while (slots[i])
                i = (i + 1) & (cap - 1);
        slots[i] = r;
}

static int grow(struct region_table *t)
{
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct region **slots = calloc(cap, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < t->cap; i++)
                if (t->slots[i])
                        insert_slot(slots, cap, t->slots[i]);
        free(t->slots);
        t->slots = slots;
        t->cap = cap;
        return 0;
}

int region_add(struct region_table *t, uint64_t idx, struct region **ret)
{
        struct region *r;
        int e;

        if (region_lookup(t, idx))
                return -EEXIST;
        if ((t->count + 1) * 4 > t->cap * 3 && (e = grow(t)) < 0)       /* load <= 0.75 */
                return e;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->idx = idx;
        r->state = REGION_RESERVED;
        r->next_page = UINT16_MAX;
        insert_slot(t->slots, t->cap, r);
        t->count++;
        if (ret)
                *ret = r;
        return 0;
}

void region_remove(struct region_table *t, struct region *r)
{
        size_t i = slot_of(r->idx, t->cap);

        while (t->slots[i] != r)
                i = (i + 1) & (t->cap - 1);
        t->slots[i] = NULL;
        /* Backward-shift deletion keeps probe chains intact without tombstones. */
        for (size_t j = (i + 1) & (t->cap - 1); t->slots[j]; j = (j + 1) & (t->cap - 1)) {
                size_t home = slot_of(t->slots[j]->idx, t->cap);
                /* move j to i if its home is cyclically outside (i, j] */
                if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
                        t->slots[i] = t->slots[j];
                        t->slots[j] = NULL;
                        i = j;
                }
        }
        t->count--;
        free(r);
}

void region_foreach_in(struct region_table *t, uint64_t lo, uint64_t hi,
                       void (*fn)(struct region_table *t, struct region *r, void *ud), void *ud)
{
        if (hi <= lo || t->count == 0)
                return;
        if (hi - lo <= t->count) {
                for (uint64_t idx = lo; idx < hi; idx++) {
                        struct region *r = region_lookup(t, idx);
                        if (r)
                                fn(t, r, ud);
                }
                return;
        }
        /* Span larger than the table: collect first, since fn may reshuffle slots. */
        size_t n = 0;
        struct region **v = malloc(t->count * sizeof(*v));
        if (!v) {
                for (uint64_t idx = lo; idx < hi; idx++) {      /* slow but correct */
                        struct region *r = region_lookup(t, idx);
                        if (r)
                                fn(t, r, ud);
                }
                return;
        }
        for (size_t i = 0; i < t->cap; i++)
                if (t->slots[i] && t->slots[i]->idx >= lo && t->slots[i]->idx < hi)
                        v[n++] = t->slots[i];
        for (size_t i = 0; i < n; i++)
                fn(t, v[i], ud);
        free(v);
}

unsigned region_mark(struct region *r, unsigned first, unsigned n)
{
        unsigned added = 0;
        for (unsigned p = first; p < first + n && p < HP_REGION_PAGES; p++) {
                uint64_t m = 1ull << (p % 64);
                if (!(r->bits[p / 64] & m)) {
                        r->bits[p / 64] |= m;
                        added++;
                }
        }
        r->populated += added;
        return added;
}

unsigned region_clear(struct region *r, unsigned first, unsigned n)
{
        unsigned cleared = 0;
        for (unsigned p = first; p < first + n && p < HP_REGION_PAGES; p++) {
                uint64_t m = 1ull << (p % 64);
                if (r->bits[p / 64] & m) {
                        r->bits[p / 64] &= ~m;
                        cleared++;
                }
        }
        r->populated -= cleared;
        return cleared;
}

void region_fill(struct region *r)
{
        memset(r->bits, 0xff, sizeof(r->bits));
        r->populated = HP_REGION_PAGES;
}

unsigned region_window(struct region *r, unsigned page, unsigned limit, unsigned max_window)
{
        unsigned n;

        if (max_window < 1)
                max_window = 1;
        if (limit > HP_REGION_PAGES)
                limit = HP_REGION_PAGES;
        if (page == r->next_page && r->window > 0)
                n = r->window * 2u;
        else
                n = 1;
        if (n > max_window)
                n = max_window;
        if (page + n > limit)
                n = limit > page ? limit - page : 1;
        /* never copy over a populated page: UFFDIO_COPY would stop there (EEXIST) */
        for (unsigned i = 1; i < n; i++)
                if (region_test(r, page + i)) {
                        n = i;
                        break;
                }
        if (n < 1)
                n = 1;
        r->window = (uint16_t)n;
        r->next_page = (uint16_t)(page + n);
        return n;
}
