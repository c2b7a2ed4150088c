/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hugetlb-size.c: the pure arithmetic of the hugetlb pool (how many pages
 * to add, what size to shrink back to), apart from hugetlb.c so that unit
 * tests need no kernel.
 */
#include <errno.h>

#include "hugetlb.h"

uint64_t hugetlb_shrink_target(uint64_t current, uint64_t added, uint64_t charged)
{
        uint64_t excess = added > charged ? added - charged : 0;
        return current > excess ? current - excess : 0;
}

int64_t hugetlb_grow_amount(uint64_t available, uint64_t want, uint64_t added, uint64_t budget)
{
        if (available >= want)
                return 0;
        uint64_t need = want - available;
        if (need > budget || added > budget - need)
                return -ENOSPC;
        return (int64_t)need;
}
