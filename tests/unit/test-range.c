/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for daemon/mm/range.c: the sorted interval set. */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdio.h>

#include "range.h"

#define R(s, e) (&(struct range){ .start = (s), .end = (e) })

static void check_sorted(const struct range_set *s)
{
        for (size_t i = 0; i < s->n; i++) {
                assert(s->v[i].start < s->v[i].end);
                if (i)
                        assert(s->v[i - 1].end <= s->v[i].start);
        }
}

int main(void)
{
        struct range_set s = RANGE_SET_NULL;

        assert(range_add(&s, R(0x3000, 0x4000)) == 0);
        assert(range_add(&s, R(0x1000, 0x2000)) == 0);
        assert(range_add(&s, R(0x5000, 0x9000)) == 0);
        assert(range_add(&s, R(0x1800, 0x3800)) == -EEXIST);
        assert(range_add(&s, R(0x2000, 0x2000)) == -EINVAL);
        assert(range_add(&s, R(0x2000, 0x3000)) == 0);  /* touching is not overlapping */
        check_sorted(&s);
        assert(s.n == 4);
        assert(s.bytes == 0x3000 + 0x4000);     /* 0x1000..0x4000 and 0x5000..0x9000 */

        assert(range_find(&s, 0x0fff) == NULL);
        assert(range_find(&s, 0x1000)->start == 0x1000);
        assert(range_find(&s, 0x3fff)->start == 0x3000);
        assert(range_find(&s, 0x4000) == NULL);
        assert(range_find(&s, 0x8fff)->end == 0x9000);
        assert(range_overlaps(&s, 0x4000, 0x5000) == 0);
        /* covered: 0x1000..0x4000 is three abutting ranges, 0x4000..0x5000 a hole */
        assert(range_covers(&s, 0x1000, 0x4000));
        assert(range_covers(&s, 0x1800, 0x3800));
        assert(range_covers(&s, 0x5000, 0x9000));
        assert(!range_covers(&s, 0x3000, 0x5001));
        assert(!range_covers(&s, 0x0, 0x1000));
        assert(!range_covers(&s, 0x8000, 0x9001));
        assert(range_overlaps(&s, 0x4000, 0x5001) == 1);

        /* split the middle of a range */
        assert(range_remove_span(&s, 0x6000, 0x7000) == 0x1000);
        check_sorted(&s);
        assert(s.bytes == 0x6000);
        assert(range_find(&s, 0x5fff)->end == 0x6000);
        assert(range_find(&s, 0x6000) == NULL);
        assert(range_find(&s, 0x7000)->start == 0x7000);
        /* a span covering several: trims head and tail, drops the middle */
        assert(range_remove_span(&s, 0x1800, 0x3800) == 0x2000);
        check_sorted(&s);
        assert(s.bytes == 0x4000);
        assert(range_find(&s, 0x17ff)->end == 0x1800);
        assert(range_find(&s, 0x2000) == NULL);
        assert(range_find(&s, 0x3800)->start == 0x3800);
        /* nothing there */
        assert(range_remove_span(&s, 0xa000, 0xb000) == 0);
        assert(range_remove_span(&s, 0, 1ull << 50) > 0);
        assert(s.n == 0 && s.bytes == 0);

        /* many ranges in reverse order stay sorted */
        for (uint64_t i = 1000; i > 0; i--)
                assert(range_add(&s, R(i << 21, (i << 21) + 4096)) == 0);
        check_sorted(&s);
        for (uint64_t i = 1; i <= 1000; i++)
                assert(range_find(&s, (i << 21) + 100)->start == i << 21);
        range_set_deinit(&s);
        printf("range: ok\n");
        return 0;
}
