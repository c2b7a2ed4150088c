/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-coverage: the pure part of daemon/ops/coverage.c: the per-mille and
 * the smaps_rollup parser, on fabricated input. */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <stdio.h>

#include "coverage.h"

int main(void)
{
        uint64_t v = 0;

        assert(coverage_permille(0, 0) == 0);
        assert(coverage_permille(5, 0) == 0);
        assert(coverage_permille(0, 100) == 0);
        assert(coverage_permille(999, 1000) == 999);
        assert(coverage_permille(1, 3) == 333);
        assert(coverage_permille(2000, 1000) == 1000);          /* capped */
        assert(coverage_permille(UINT64_MAX - 1, UINT64_MAX) == 999);   /* no overflow */

        const char *rollup =
                "55d0c0a00000-7ffd7d1fe000 ---p 00000000 00:00 0                          [rollup]\n"
                "Rss:              485556 kB\n"
                "Pss_Anon:         480292 kB\n"
                "Anonymous:        480292 kB\n"
                "AnonHugePages:    466944 kB\n";
        assert(coverage_parse_anonymous(rollup, &v) == 0 && v == 480292ull * 1024);
        assert(coverage_parse_anonymous("Rss: 4 kB\nAnonHugePages: 0 kB\n", &v) == -EINVAL);
        assert(coverage_parse_anonymous("", &v) == -EINVAL);
        assert(coverage_parse_anonymous("Anonymous: x kB\n", &v) == -EINVAL);
        assert(coverage_parse_anonymous("Anonymous:        99999999999999999999 kB\n", &v) == -EINVAL);
        assert(coverage_parse_anonymous("Anonymous:        0 kB", &v) == 0 && v == 0);
        printf("ok\n");
        return 0;
}
