/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The hugetlb pool's arithmetic: how much to grow, what to shrink back to. */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include "hugetlb.h"

static void test_grow(void)
{
        /* enough free pages: nothing to add */
        assert(hugetlb_grow_amount(10, 10, 0, 100) == 0);
        assert(hugetlb_grow_amount(50, 10, 0, 0) == 0);
        /* the shortfall, within the budget */
        assert(hugetlb_grow_amount(4, 10, 0, 100) == 6);
        assert(hugetlb_grow_amount(0, 100, 0, 100) == 100);            /* exactly the budget */
        assert(hugetlb_grow_amount(0, 10, 90, 100) == 10);             /* the budget's last pages */
        /* beyond the budget: refused as a whole, never partly */
        assert(hugetlb_grow_amount(0, 101, 0, 100) == -ENOSPC);
        assert(hugetlb_grow_amount(0, 11, 90, 100) == -ENOSPC);
        assert(hugetlb_grow_amount(0, 1, 0, 0) == -ENOSPC);             /* budget 0: never grow */
        /* no overflow with absurd values from a client */
        assert(hugetlb_grow_amount(0, UINT64_MAX, 0, 100) == -ENOSPC);
        assert(hugetlb_grow_amount(0, 1, UINT64_MAX, 100) == -ENOSPC);
        assert(hugetlb_grow_amount(0, 10, 5, UINT64_MAX) == 10);
}

static void test_shrink(void)
{
        /* everything added is still charged: keep the pool */
        assert(hugetlb_shrink_target(20, 10, 10) == 20);
        assert(hugetlb_shrink_target(20, 10, 15) == 20);                /* charged beyond what was added */
        /* give back exactly what nobody is charged for */
        assert(hugetlb_shrink_target(20, 10, 4) == 14);
        assert(hugetlb_shrink_target(20, 10, 0) == 10);                 /* back to what was there */
        /* never below 0, whatever the counts say */
        assert(hugetlb_shrink_target(3, 10, 0) == 0);
        assert(hugetlb_shrink_target(0, 0, 0) == 0);
}

int main(void)
{
        test_grow();
        test_shrink();
        printf("hugetlb pool arithmetic: ok\n");
        return 0;
}
