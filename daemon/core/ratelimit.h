/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ratelimit.h: a request rate limit as the generic cell rate algorithm
 * (GCRA, a token bucket kept as one timestamp): `rate` events per second on
 * average, up to `burst` at once. Pure and header-only; unit-tested
 * (tests/security/test-ratelimit.c).
 */
#ifndef HP_RATELIMIT_H
#define HP_RATELIMIT_H

#include <stdint.h>

struct rate_limit {
        uint64_t tat_ns;        /* theoretical arrival time of the next event */
};

/*
 * Account one event at `now` (ns, any monotonic clock). Returns 0 if it may
 * pass now, else the first time at which one may (> now; nothing is
 * accounted). rate 0: no limit. burst 0 counts as 1.
 */
static inline uint64_t rate_limit_take(struct rate_limit *rl, uint64_t now, uint32_t rate, uint32_t burst)
{
        if (rate == 0)
                return 0;
        uint64_t interval = 1000000000ull / rate;
        if (interval == 0)
                interval = 1;
        uint64_t tolerance = (uint64_t)(burst ? burst - 1 : 0) * interval;
        uint64_t tat = rl->tat_ns > now ? rl->tat_ns : now;
        if (tat - now > tolerance)
                return tat - tolerance;
        rl->tat_ns = tat + interval;
        return 0;
}

#endif
