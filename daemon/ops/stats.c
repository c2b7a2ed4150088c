/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * stats.c: latency histograms and counters. Pure.
 */
#include "stats.h"

static unsigned bucket_of(uint64_t v)
{
        if (v < HIST_SUB)
                return (unsigned)v;
        unsigned msb = 63 - (unsigned)__builtin_clzll(v);       /* >= 3 */
        unsigned sub = (unsigned)(v >> (msb - 3)) & (HIST_SUB - 1);
        return (msb - 2) * HIST_SUB + sub;
}

uint64_t histogram_bucket_upper(unsigned b)
{
        if (b < HIST_SUB)
                return b;
        unsigned msb = b / HIST_SUB + 2, sub = b % HIST_SUB;
        uint64_t lo = (1ull << msb) | ((uint64_t)sub << (msb - 3));
        return lo + (1ull << (msb - 3)) - 1;
}

void histogram_add(struct histogram *h, uint64_t ns)
{
        unsigned b = bucket_of(ns);
        if (b >= HIST_BUCKETS)
                b = HIST_BUCKETS - 1;
        h->bucket[b]++;
        h->count++;
        h->sum += ns;
}

uint64_t histogram_quantile(const struct histogram *h, double q)
{
        if (h->count == 0)
                return 0;
        uint64_t want = (uint64_t)(q * (double)h->count);
        if (want >= h->count)
                want = h->count - 1;
        uint64_t seen = 0;
        for (unsigned b = 0; b < HIST_BUCKETS; b++) {
                seen += h->bucket[b];
                if (seen > want)
                        return histogram_bucket_upper(b);
        }
        return histogram_bucket_upper(HIST_BUCKETS - 1);
}

void histogram_merge(struct histogram *dst, const struct histogram *src)
{
        if (!src->count)
                return;
        for (unsigned b = 0; b < HIST_BUCKETS; b++)
                dst->bucket[b] += src->bucket[b];
        dst->count += src->count;
        dst->sum += src->sum;
}

void counters_add(struct counters *dst, const struct counters *src)
{
        dst->faults_served += src->faults_served;
        dst->pages_populated += src->pages_populated;
        dst->promotions += src->promotions;
        dst->promotions_failed += src->promotions_failed;
        dst->reservations_released += src->reservations_released;
        dst->regions_made += src->regions_made;
        dst->skipped_headroom += src->skipped_headroom;
        dst->skipped_pressure += src->skipped_pressure;
        dst->skipped_bloat += src->skipped_bloat;
        histogram_merge(&dst->fault_latency_ns, &src->fault_latency_ns);
        histogram_merge(&dst->promotion_latency_ns, &src->promotion_latency_ns);
}
