/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * stats.h: counters and latency histograms (log-linear buckets, ~12%
 * resolution, 1 ns .. 2^63 ns). Pure, unit-tested.
 */
#ifndef HP_STATS_H
#define HP_STATS_H

#include <stdint.h>

#define HIST_SUB 8
#define HIST_BUCKETS (64 * HIST_SUB)
/* Buckets a 64-bit value can land in; the rest stay empty. */
#define HIST_USED_BUCKETS (62 * HIST_SUB)

struct histogram {
        uint64_t count;
        uint64_t sum;           /* of every value added (ns); wraps after 584 years */
        uint32_t bucket[HIST_BUCKETS];
};

void histogram_add(struct histogram *h, uint64_t ns);
/* Value at quantile q (0..1): the upper bound of its bucket; 0 if empty. */
uint64_t histogram_quantile(const struct histogram *h, double q);
/* The largest value bucket b (< HIST_USED_BUCKETS) holds: values in it are
 * <= this and > the bound of b-1. */
uint64_t histogram_bucket_upper(unsigned b);

/* Kept per client; the daemon's totals are those of the clients gone plus
 * the live ones (client_totals). Names as in DESIGN.md. */
struct counters {
        uint64_t faults_served;
        uint64_t pages_populated;
        uint64_t promotions;
        uint64_t promotions_failed;
        uint64_t reservations_released;
        uint64_t regions_made;                  /* reservation records made (density of use) */
        uint64_t skipped_headroom;              /* promotions held back: the cgroup had no room */
        uint64_t skipped_pressure;              /* ... memory pressure */
        uint64_t skipped_bloat;                 /* ... a bloat cap */
        struct histogram fault_latency_ns;
        struct histogram promotion_latency_ns;
};

void histogram_merge(struct histogram *dst, const struct histogram *src);
/* dst += src, field by field. */
void counters_add(struct counters *dst, const struct counters *src);

#endif
