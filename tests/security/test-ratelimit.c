/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-ratelimit.c: daemon/core/ratelimit.h: a burst passes at once, then the rate holds, over any window. */
#undef NDEBUG
#include <assert.h>
#include <stdio.h>

#include "ratelimit.h"

#define S 1000000000ull

int main(void)
{
        struct rate_limit rl = { 0 };
        uint64_t t = 5 * S;

        /* no limit */
        for (int i = 0; i < 100000; i++)
                assert(rate_limit_take(&rl, t, 0, 0) == 0);

        /* 100/s, burst 100: 100 at once, the 101st waits 10 ms */
        rl = (struct rate_limit){ 0 };
        for (int i = 0; i < 100; i++)
                assert(rate_limit_take(&rl, t, 100, 100) == 0);
        uint64_t next = rate_limit_take(&rl, t, 100, 100);
        assert(next == t + S / 100);
        assert(rate_limit_take(&rl, next - 1, 100, 100) != 0);
        assert(rate_limit_take(&rl, next, 100, 100) == 0);

        /* a client asking as fast as it may gets rate * T + burst in T */
        rl = (struct rate_limit){ 0 };
        unsigned passed = 0;
        for (uint64_t now = t; now < t + 10 * S; now += S / 10000)
                while (rate_limit_take(&rl, now, 1000, 1000) == 0)
                        passed++;
        assert(passed >= 10 * 1000 && passed <= 10 * 1000 + 1000 + 1);

        /* idle time does not bank more than the burst */
        rl = (struct rate_limit){ 0 };
        assert(rate_limit_take(&rl, t, 10, 3) == 0);
        t += 100 * S;
        passed = 0;
        while (rate_limit_take(&rl, t, 10, 3) == 0)
                passed++;
        assert(passed == 3);

        /* a denied request is not counted */
        uint64_t a = rate_limit_take(&rl, t, 10, 3), b = rate_limit_take(&rl, t, 10, 3);
        assert(a == b && a > t);
        printf("ratelimit: ok\n");
        return 0;
}
