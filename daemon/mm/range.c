/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * range.c: sorted disjoint interval set (see range.h). Pure logic.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "range.h"

void range_set_deinit(struct range_set *s)
{
        free(s->v);
        *s = RANGE_SET_NULL;
}

/* Index of the first range with end > addr (n if none). */
static size_t first_ending_after(const struct range_set *s, uint64_t addr)
{
        size_t lo = 0, hi = s->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (s->v[mid].end <= addr)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

struct range *range_find(const struct range_set *s, uint64_t addr)
{
        size_t i = first_ending_after(s, addr);
        if (i < s->n && s->v[i].start <= addr)
                return &s->v[i];
        return NULL;
}

int range_overlaps(const struct range_set *s, uint64_t start, uint64_t end)
{
        size_t i = first_ending_after(s, start);
        return i < s->n && s->v[i].start < end;
}

bool range_covers(const struct range_set *s, uint64_t start, uint64_t end)
{
        while (start < end) {
                const struct range *r = range_find(s, start);
                if (!r)
                        return false;
                start = r->end;
        }
        return true;
}

static int reserve(struct range_set *s, size_t extra)
{
        if (s->n + extra <= s->cap)
                return 0;
        size_t cap = s->cap ? s->cap * 2 : 8;
        while (cap < s->n + extra)
                cap *= 2;
        struct range *v = realloc(s->v, cap * sizeof(*v));
        if (!v)
                return -ENOMEM;
        s->v = v;
        s->cap = cap;
        return 0;
}

int range_add(struct range_set *s, const struct range *r)
{
        if (r->end <= r->start)
                return -EINVAL;
        if (range_overlaps(s, r->start, r->end))
                return -EEXIST;
        if (reserve(s, 1) < 0)
                return -ENOMEM;
        size_t i = first_ending_after(s, r->start);
        memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
        s->v[i] = *r;
        s->n++;
        s->bytes += r->end - r->start;
        return 0;
}

int64_t range_remove_span(struct range_set *s, uint64_t start, uint64_t end)
{
        int64_t removed = 0;

        if (end <= start)
                return 0;
        size_t i = first_ending_after(s, start);
        /* A range strictly containing the span is split in two. */
        if (i < s->n && s->v[i].start < start && s->v[i].end > end) {
                if (reserve(s, 1) < 0)
                        return -ENOMEM;
                memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
                s->n++;
                s->v[i].end = start;
                s->v[i + 1].start = end;
                s->bytes -= end - start;
                return (int64_t)(end - start);
        }
        while (i < s->n && s->v[i].start < end) {
                struct range *r = &s->v[i];
                uint64_t cs = r->start > start ? r->start : start;
                uint64_t ce = r->end < end ? r->end : end;
                removed += (int64_t)(ce - cs);
                if (r->start < start) {         /* keep the head */
                        r->end = start;
                        i++;
                } else if (r->end > end) {      /* keep the tail */
                        r->start = end;
                        i++;
                } else {                        /* drop entirely */
                        memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
                        s->n--;
                }
        }
        s->bytes -= (uint64_t)removed;
        return removed;
}
