/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * range.h: the address intervals a client registered, with their policy.
 * A sorted array of disjoint intervals: O(log n) lookup, O(n) insert (ranges
 * change rarely; faults only look up). Pure logic, unit-tested.
 */
#ifndef HP_RANGE_H
#define HP_RANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

struct range {
        uint64_t start, end;    /* [start, end), page aligned */
        uint32_t threshold;     /* 0 = the client's default */
        uint32_t backend;       /* HP_RANGE_* */
        struct policy_density density;  /* its regions so far (policy_learned_threshold) */
};

struct range_set {
        struct range *v;
        size_t n, cap;
        uint64_t bytes;         /* the ranges' total size */
};

#define RANGE_SET_NULL ((struct range_set){ 0 })

void range_set_deinit(struct range_set *s);
/* The range containing addr, or NULL. */
struct range *range_find(const struct range_set *s, uint64_t addr);
/* Is every byte of [start, end) in some range (ranges may abut)? */
bool range_covers(const struct range_set *s, uint64_t start, uint64_t end);
/* Does any range intersect [start, end)? */
int range_overlaps(const struct range_set *s, uint64_t start, uint64_t end);
/* Insert; -EEXIST on overlap, -ENOMEM. */
int range_add(struct range_set *s, const struct range *r);
/*
 * Cut [start, end) out of every range (trimming or splitting them). Returns
 * the number of bytes removed (>= 0) or -ENOMEM (then nothing changed).
 */
int64_t range_remove_span(struct range_set *s, uint64_t start, uint64_t end);

#endif
