/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for daemon/mm/policy.c: the promotion decisions and the
 * precedence of policy layers. */
#undef NDEBUG
#include <assert.h>
#include <stdio.h>

#include "policy.h"

static void test_decisions(void)
{
        struct region huge = { .state = REGION_HUGE }, res = { .state = REGION_RESERVED },
                      failed = { .state = REGION_RESERVED, .flags = REGION_F_NO_PROMOTE };

        assert(policy_first_fault(NULL, NULL, NULL, 0, true) == PROMOTE_NONE);
        /* a stream through two promoted regions continues into this one */
        assert(policy_first_fault(&huge, &huge, NULL, 0, true) == PROMOTE_NATIVE);
        assert(policy_first_fault(&huge, &huge, NULL, 0, false) == PROMOTE_NONE);
        assert(policy_first_fault(&huge, &huge, NULL, 300, true) == PROMOTE_NONE);     /* not a stream */
        /* one promoted neighbour is not a stream: dense and sparse regions
         * interleaved must not promote the sparse one after each dense one */
        assert(policy_first_fault(&res, &huge, NULL, 0, true) == PROMOTE_NONE);
        assert(policy_first_fault(NULL, &huge, NULL, 0, true) == PROMOTE_NONE);
        assert(policy_first_fault(&huge, &res, NULL, 0, true) == PROMOTE_NONE);
        assert(policy_first_fault(NULL, NULL, &huge, 511, true) == PROMOTE_NONE);
        assert(policy_first_fault(NULL, &huge, &huge, 300, true) == PROMOTE_NATIVE);   /* gap in dense */
        assert(policy_first_fault(&res, &res, &res, 0, true) == PROMOTE_NONE);         /* sparse neighbours */
        assert(policy_first_fault(&failed, &failed, NULL, 0, true) == PROMOTE_NONE);
        /* readahead: as far ahead as the stream has come, no further than
         * the range or the first region with a record */
        struct region_table t = REGION_TABLE_NULL;
        struct region *x;
        assert(policy_native_ahead(&t, 10, 0, 100, 16) == 0);   /* nothing behind */
        for (uint64_t i = 4; i < 10; i++) {
                assert(region_add(&t, i, &x) == 0);
                x->state = REGION_HUGE;
        }
        assert(policy_native_ahead(&t, 10, 0, 100, 16) == 6);  /* 6 behind: 6 ahead */
        assert(policy_native_ahead(&t, 10, 0, 100, 4) == 4);   /* capped */
        assert(policy_native_ahead(&t, 10, 7, 100, 16) == 3);  /* range starts at 7 */
        assert(policy_native_ahead(&t, 10, 0, 13, 16) == 2);   /* regions 11, 12 only */
        assert(region_add(&t, 12, &x) == 0);                    /* a record stops it */
        assert(policy_native_ahead(&t, 10, 0, 100, 16) == 1);
        x = region_lookup(&t, 8);
        x->flags |= REGION_F_NO_PROMOTE;
        x->state = REGION_RESERVED;                              /* a failed one breaks the streak */
        assert(policy_native_ahead(&t, 10, 0, 100, 16) == 1);
        assert(policy_native_ahead(&t, 11, 0, 100, 16) == 0);  /* 10 has no record */
        region_table_deinit(&t);

        struct region r = { .state = REGION_RESERVED };
        region_mark(&r, 0, 63);
        assert(!policy_should_promote(&r, 64, true));
        region_mark(&r, 100, 1);
        assert(policy_should_promote(&r, 64, true));
        assert(!policy_should_promote(&r, 64, false));  /* partial region: never */
        r.flags |= REGION_F_NO_PROMOTE;
        assert(!policy_should_promote(&r, 64, true));
        struct region one = { .state = REGION_RESERVED };
        region_mark(&one, 7, 1);
        assert(policy_should_promote(&one, 1, true));   /* threshold 1: every touched region */
}

static void test_learned(void)
{
        struct policy_density none = { 0 }, few = { 7, 7 }, dense = { 8, 8 }, dense2 = { 93, 87 },
                              edge = { 100, 75 }, below = { 100, 74 }, sparse = { 4096, 0 },
                              mixed = { 4096, 1024 }, top = { UINT32_MAX, UINT32_MAX }, topsparse = { UINT32_MAX, 0 };

        /* too few regions decided, in the range and the client: as it is */
        assert(policy_learned_threshold(64, &none, &none) == 64);
        assert(policy_learned_threshold(64, &few, &few) == 64);
        /* dense: most regions made were promoted */
        assert(policy_learned_threshold(64, &dense, &none) == 8);
        assert(policy_learned_threshold(64, &edge, &none) == 8);
        assert(policy_learned_threshold(64, &dense2, &sparse) == 8);   /* the range's own counts first */
        /* sparse (none promoted) or mixed (a quarter dense): never lowered */
        assert(policy_learned_threshold(64, &sparse, &dense) == 64);
        assert(policy_learned_threshold(64, &mixed, &none) == 64);
        assert(policy_learned_threshold(64, &below, &none) == 64);
        /* a range with few regions of its own goes by the client's */
        assert(policy_learned_threshold(64, &few, &dense2) == 8);
        assert(policy_learned_threshold(64, &none, &sparse) == 64);
        /* small thresholds stay >= 1; counts at the top of their type do not overflow */
        assert(policy_learned_threshold(4, &dense, &none) == 1);
        assert(policy_learned_threshold(1, &dense, &none) == 1);
        assert(policy_learned_threshold(512, &dense, &none) == 64);
        assert(policy_learned_threshold(64, &top, &none) == 8);
        assert(policy_learned_threshold(64, &topsparse, &none) == 64);

        /* the counts: a region promoted at a learned threshold is left out,
         * so sparse regions made meanwhile turn the learning off again */
        struct policy_density d = { 0 };
        for (int i = 0; i < 8; i++) {
                policy_density_note(&d, POLICY_REGION_MADE);
                policy_density_note(&d, POLICY_REGION_DENSE);
        }
        assert(d.made == 8 && d.promoted == 8 && policy_learned_threshold(64, &d, &none) == 8);
        policy_density_note(&d, POLICY_REGION_MADE);
        policy_density_note(&d, POLICY_REGION_LEARNED);
        assert(d.made == 8 && d.promoted == 8);
        for (int i = 0; i < 3; i++)
                policy_density_note(&d, POLICY_REGION_MADE);    /* sparse ones */
        assert(d.made == 11 && policy_learned_threshold(64, &d, &none) == 64);
        policy_density_note(&d, POLICY_REGION_DENSE);
        assert(d.promoted == 9);
        struct policy_density z = { 0 };
        policy_density_note(&z, POLICY_REGION_DENSE);           /* never more promoted than made */
        policy_density_note(&z, POLICY_REGION_LEARNED);
        assert(z.made == 0 && z.promoted == 0);
}

static void test_layers(void)
{
        const struct policy on = { .threshold = 64, .max_window = 64, .dense_predict = true };
        const struct policy off = { .threshold = 64, .max_window = 64, .dense_predict = false };
        struct policy_layers l = { POLICY_LAYER_UNSET, POLICY_LAYER_UNSET, POLICY_LAYER_UNSET };
        struct policy p;

        /* nothing set: the config's defaults */
        p = policy_resolve(&on, &l);
        assert(p.threshold == 64 && p.max_window == 64 && p.dense_predict);
        assert(!policy_explicit(&l));

        /* [Program:] over the defaults, and it may turn dense prediction on */
        l.program = (struct policy_layer){ .threshold = 128, .max_window = 16, .dense_predict = 1 };
        p = policy_resolve(&off, &l);
        assert(p.threshold == 128 && p.max_window == 16 && p.dense_predict);
        assert(!policy_explicit(&l));   /* still the config's own */

        /* the client over [Program:] for what it sets; the rest stays */
        l.client = (struct policy_layer){ .threshold = 32, .dense_predict = -1 };
        p = policy_resolve(&off, &l);
        assert(p.threshold == 32 && p.max_window == 16 && p.dense_predict);
        assert(policy_explicit(&l));

        /* D-Bus over the client */
        l.admin = (struct policy_layer){ .threshold = 300, .max_window = 8, .dense_predict = -1 };
        p = policy_resolve(&off, &l);
        assert(p.threshold == 300 && p.max_window == 8);

        /* dense prediction: off by the client, back on by D-Bus as far as the config allows */
        l = (struct policy_layers){ POLICY_LAYER_UNSET, POLICY_LAYER_UNSET, POLICY_LAYER_UNSET };
        l.client.dense_predict = 0;
        assert(!policy_resolve(&on, &l).dense_predict);
        l.admin.dense_predict = 1;
        assert(policy_resolve(&on, &l).dense_predict);
        /* ... but never on against the config */
        assert(!policy_resolve(&off, &l).dense_predict);
        l.client.dense_predict = 1;
        assert(!policy_resolve(&off, &l).dense_predict);
        /* [Program:] off wins over a global on, and D-Bus cannot undo it */
        l.program.dense_predict = 0;
        assert(!policy_resolve(&on, &l).dense_predict);
}

static void test_budget(void)
{
        assert(policy_budget_allows(0, 1));
        assert(policy_budget_allows(POLICY_MAX_UNREGISTERED - 17, 17));
        assert(!policy_budget_allows(POLICY_MAX_UNREGISTERED - 16, 17));
        assert(!policy_budget_allows(POLICY_MAX_UNREGISTERED, 1));
        assert(policy_threshold(0, &(struct policy){ .threshold = 64 }) == 64);
        assert(policy_threshold(7, &(struct policy){ .threshold = 64 }) == 7);
}

static void test_headroom(void)
{
        const uint64_t M = 1ull << 20;

        /* no limit: always */
        assert(policy_headroom_allows(UINT64_MAX, 2 * M, 1ull << 40, 0));
        /* the charge, the margin and the future must all fit in the room */
        assert(policy_headroom_allows(100 * M, 2 * M, 30 * M, 64 * M));
        assert(!policy_headroom_allows(100 * M, 2 * M, 35 * M, 64 * M));
        assert(!policy_headroom_allows(64 * M, 0, 0, 64 * M));          /* no room past the margin */
        assert(!policy_headroom_allows(10 * M, 20 * M, 0, 0));
        /* margins: 10% or 64 MiB, whichever is less, unless configured */
        assert(policy_margin(768 * M, 0, 0) == 64 * M);
        assert(policy_margin(256 * M, 0, 0) == 256 * M / 10);
        assert(policy_margin(768 * M, 32 * M, 0) == 32 * M);
        assert(policy_margin(1000 * M, 0, 5) == 50 * M);
        assert(policy_margin(UINT64_MAX, 0, 0) == 0);
        /* the future: untouched regions at the density seen so far */
        assert(policy_future_4k(3072 * M, 0, 0, 0) == 0);               /* nothing seen yet */
        assert(policy_future_4k(3072 * M, 536, 536, 536 * 70) == 1000ull * 70 * 4096);
        assert(policy_future_4k(4 * M, 2, 2, 1024) == 0);               /* every region touched */
        assert(policy_future_4k(6 * M, 1, 1, 5000) == 2ull * 512 * 4096);   /* at most 512 per region */
        /* the S10 case: a 768 MiB limit, 3 GiB managed, 70 pages a region:
         * promotions must stop while the rest still fits at 4 KiB */
        uint64_t usage = 0, promoted = 0;
        for (uint64_t r = 1; r <= 1536; r++) {
                usage += 64 * 4096;     /* the pages up to the threshold */
                uint64_t room = 768 * M - usage;
                uint64_t future = policy_future_4k(3072 * M, r, r, r * 64);
                if (policy_headroom_allows(room, (512 - 64) * 4096ull, future, policy_margin(768 * M, 0, 0))) {
                        usage += (512 - 64) * 4096ull;
                        promoted++;
                } else
                        usage += 6 * 4096;      /* the rest of its 70 at 4 KiB */
        }
        assert(promoted >= 50);                 /* >= 100 MiB huge */
        assert(usage <= 768 * M);               /* and it fits */
        /* bloat caps */
        assert(policy_bloat_allows(0, 448, UINT64_MAX));
        assert(!policy_bloat_allows(0, 1, 0));
        assert(policy_bloat_allows(0, 0, 0));                           /* full regions under a cap of 0 */
        assert(policy_bloat_allows(100, 400, 500) && !policy_bloat_allows(101, 400, 500));
}

static void test_pressure(void)
{
        const uint64_t G = 1ull << 30, calm = PRESSURE_CALM_NS;

        assert(policy_pressure_next(PRESSURE_NONE, false, 8 * G, 2 * G, 0) == PRESSURE_NONE);
        assert(policy_pressure_next(PRESSURE_NONE, true, 3 * G, 2 * G, 0) == PRESSURE_SOME);     /* PSI, short */
        /* a stall with plenty available (a cgroup reclaiming under its limit) */
        assert(policy_pressure_next(PRESSURE_NONE, true, 8 * G, 2 * G, 0) == PRESSURE_NONE);
        assert(policy_pressure_next(PRESSURE_NONE, false, 1.5 * G, 2 * G, 0) == PRESSURE_SOME); /* watermark */
        assert(policy_pressure_next(PRESSURE_SOME, false, 0.5 * G, 2 * G, 0) == PRESSURE_HIGH);
        /* falls one step at a time, only after a calm spell with room to spare */
        assert(policy_pressure_next(PRESSURE_HIGH, false, 8 * G, 2 * G, calm - 1) == PRESSURE_HIGH);
        assert(policy_pressure_next(PRESSURE_HIGH, false, 8 * G, 2 * G, calm) == PRESSURE_SOME);
        assert(policy_pressure_next(PRESSURE_SOME, false, 8 * G, 2 * G, calm) == PRESSURE_NONE);
        assert(policy_pressure_next(PRESSURE_SOME, false, 2 * G + 1, 2 * G, calm) == PRESSURE_SOME);
        assert(policy_pressure_next(PRESSURE_SOME, false, 2 * G + (512ull << 20), 2 * G, calm) == PRESSURE_NONE);
        /* no watermark (0): PSI alone */
        assert(policy_pressure_next(PRESSURE_NONE, false, 0, 0, 0) == PRESSURE_NONE);
}

int main(void)
{
        test_decisions();
        test_learned();
        test_layers();
        test_budget();
        test_headroom();
        test_pressure();
        printf("policy: ok\n");
        return 0;
}
