/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for daemon/mm/region.c: table, bitmap accounting, windows. */
#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "region.h"

static void test_table(void)
{
        struct region_table t = REGION_TABLE_NULL;
        struct region *r;
        enum { N = 5000 };

        assert(region_lookup(&t, 1) == NULL);
        /* consecutive and scattered indices, enough to force several grows */
        for (uint64_t i = 0; i < N; i++) {
                uint64_t idx = (i % 2) ? i : i * 7919 + (1ull << 40);
                assert(region_add(&t, idx, &r) == 0);
                assert(r->idx == idx && r->state == REGION_RESERVED && r->populated == 0);
        }
        assert(t.count == N);
        assert(region_add(&t, 1, NULL) == -EEXIST);
        for (uint64_t i = 0; i < N; i++) {
                uint64_t idx = (i % 2) ? i : i * 7919 + (1ull << 40);
                r = region_lookup(&t, idx);
                assert(r && r->idx == idx);
        }
        /* remove every third, the rest must stay findable (backward-shift deletion) */
        for (uint64_t i = 0; i < N; i += 3) {
                uint64_t idx = (i % 2) ? i : i * 7919 + (1ull << 40);
                region_remove(&t, region_lookup(&t, idx));
        }
        for (uint64_t i = 0; i < N; i++) {
                uint64_t idx = (i % 2) ? i : i * 7919 + (1ull << 40);
                r = region_lookup(&t, idx);
                assert((i % 3 == 0) == (r == NULL));
        }
        region_table_deinit(&t);
        assert(t.count == 0 && t.slots == NULL);
}

static void count_cb(struct region_table *t, struct region *r, void *ud)
{
        (*(unsigned *)ud)++;
        region_remove(t, r);
}

static void test_foreach(void)
{
        struct region_table t = REGION_TABLE_NULL;
        for (uint64_t i = 100; i < 200; i++)
                assert(region_add(&t, i, NULL) == 0);
        unsigned n = 0;
        region_foreach_in(&t, 150, 160, count_cb, &n);          /* small span: lookups */
        assert(n == 10 && t.count == 90);
        n = 0;
        region_foreach_in(&t, 0, 1ull << 50, count_cb, &n);     /* huge span: scan */
        assert(n == 90 && t.count == 0);
        region_table_deinit(&t);
}

static void test_bits(void)
{
        struct region r = { 0 };
        assert(region_mark(&r, 0, 10) == 10 && r.populated == 10);
        assert(region_mark(&r, 5, 10) == 5 && r.populated == 15);
        assert(region_test(&r, 14) && !region_test(&r, 15));
        assert(region_mark(&r, 510, 10) == 2 && r.populated == 17);     /* clipped at 512 */
        assert(region_clear(&r, 0, 5) == 5 && r.populated == 12);
        assert(region_clear(&r, 0, 5) == 0);
        region_fill(&r);
        assert(r.populated == 512 && region_test(&r, 0) && region_test(&r, 511));
}

static void test_window(void)
{
        struct region r = { .next_page = UINT16_MAX };
        /* sequential faults double the window: 1 2 4 8 16 32 64 64 */
        unsigned page = 0, expect[] = { 1, 2, 4, 8, 16, 32, 64, 64 };
        for (unsigned i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
                unsigned n = region_window(&r, page, 512, 64);
                assert(n == expect[i]);
                region_mark(&r, page, n);
                page += n;
        }
        /* a random fault resets to 1 */
        assert(region_window(&r, 400, 512, 64) == 1);
        /* clipped at the range limit */
        struct region s = { .next_page = 10, .window = 8 };
        assert(region_window(&s, 10, 12, 64) == 2);
        /* clipped before a populated page */
        struct region u = { .next_page = 0, .window = 16 };
        region_mark(&u, 5, 1);
        assert(region_window(&u, 0, 512, 64) == 5);
        /* never zero, even at a populated page (the copy then reports EEXIST) */
        assert(region_window(&u, 5, 512, 64) >= 1);
}

int main(void)
{
        test_table();
        test_foreach();
        test_bits();
        test_window();
        printf("region: ok (record %zu bytes)\n", sizeof(struct region));
        assert(sizeof(struct region) <= 128);
        return 0;
}
