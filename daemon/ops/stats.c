/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * stats.c: latency histograms. Pure.
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
