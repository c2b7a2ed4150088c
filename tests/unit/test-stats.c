/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for daemon/ops/stats.c: histogram quantiles. */
#undef NDEBUG
#include <assert.h>
#include <stdio.h>

#include "stats.h"

static void near(uint64_t got, uint64_t want)
{
        /* bucket upper bounds are within 12.5% above the true value */
        assert(got >= want && got <= want + want / 8 + 1);
}

int main(void)
{
        struct histogram h = { 0 };
        assert(histogram_quantile(&h, 0.5) == 0);
        for (uint64_t v = 1; v <= 1000; v++)
                histogram_add(&h, v * 1000);    /* 1 us .. 1 ms */
        assert(h.count == 1000);
        assert(h.sum == 500500ull * 1000);
        /* bucket bounds increase up to the last bucket a value can reach (2^64 - 1) */
        for (unsigned b = 1; b < HIST_USED_BUCKETS; b++)
                assert(histogram_bucket_upper(b) > histogram_bucket_upper(b - 1));
        assert(histogram_bucket_upper(HIST_USED_BUCKETS - 1) == ~0ull);
        assert(histogram_bucket_upper(HIST_SUB * 8 - 1) == (1ull << 10) - 1);   /* doublings end buckets */
        for (unsigned b = 0; b < HIST_BUCKETS; b++)
                if (h.bucket[b]) {
                        assert(b > 0 && histogram_bucket_upper(b - 1) < 1000);
                        break;
                }
        near(histogram_quantile(&h, 0.50), 501000);
        near(histogram_quantile(&h, 0.99), 991000);
        near(histogram_quantile(&h, 0.0), 1000);
        near(histogram_quantile(&h, 1.0), 1000000);
        struct histogram small = { 0 };
        histogram_add(&small, 0);
        histogram_add(&small, 7);
        assert(histogram_quantile(&small, 0.0) == 0 && histogram_quantile(&small, 0.99) == 7);
        struct histogram big = { 0 };
        histogram_add(&big, ~0ull);
        assert(histogram_quantile(&big, 0.5) >= (1ull << 63));
        printf("stats: ok\n");
        return 0;
}
