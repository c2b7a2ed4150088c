/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * policy.c: the promotion decisions and the policy layers (policy.h). Pure.
 */
#include "policy.h"

static void apply(struct policy *p, bool *dense_allowed, const struct policy_layer *l, bool may_enable)
{
        if (l->threshold)
                p->threshold = l->threshold;
        if (l->max_window)
                p->max_window = l->max_window;
        if (l->dense_predict >= 0) {
                if (may_enable)
                        *dense_allowed = l->dense_predict;
                p->dense_predict = l->dense_predict && *dense_allowed;
        }
}

struct policy policy_resolve(const struct policy *defaults, const struct policy_layers *l)
{
        struct policy p = *defaults;
        bool allowed = defaults->dense_predict;

        apply(&p, &allowed, &l->program, true);         /* the config's own: may turn it on */
        apply(&p, &allowed, &l->client, false);
        apply(&p, &allowed, &l->admin, false);
        return p;
}

bool policy_explicit(const struct policy_layers *l)
{
        return l->client.threshold || l->client.max_window || l->client.dense_predict >= 0 ||
               l->admin.threshold || l->admin.max_window || l->admin.dense_predict >= 0;
}

bool policy_headroom_allows(uint64_t room, uint64_t charge, uint64_t future, uint64_t margin)
{
        if (room == UINT64_MAX)
                return true;
        if (room <= margin)
                return false;
        uint64_t left = room - margin;
        return charge <= left && future <= left - charge;
}

uint64_t policy_margin(uint64_t limit, uint64_t margin_bytes, unsigned margin_percent)
{
        if (limit == UINT64_MAX)
                return 0;
        if (margin_percent)
                return limit / 100 * margin_percent;
        if (margin_bytes)
                return margin_bytes;
        uint64_t tenth = limit / 10, cap = 64ull << 20;
        return tenth < cap ? tenth : cap;
}

uint64_t policy_future_4k(uint64_t managed_bytes, uint64_t regions_now, uint64_t regions_made,
                          uint64_t pages_served)
{
        uint64_t regions = managed_bytes >> REGION_SHIFT;
        if (regions <= regions_now || regions_made == 0)
                return 0;
        uint64_t per = pages_served / regions_made;
        if (per > HP_REGION_PAGES)
                per = HP_REGION_PAGES;
        return (regions - regions_now) * per << PAGE_SHIFT_4K;
}

int policy_pressure_next(int cur, bool psi_fired, uint64_t available, uint64_t low, uint64_t since_cause_ns)
{
        int want = PRESSURE_NONE;

        /* A stall alone is no shortage: a cgroup reclaiming under its own
         * limit stalls too, on a host with plenty left. With less than twice
         * the low mark available, a stall is the host's pressure. */
        if (available < low / 2)
                want = PRESSURE_HIGH;
        else if (available < low || (psi_fired && available / 2 < low))
                want = PRESSURE_SOME;
        if (want >= cur)
                return want;
        /* falling: one step at a time, after a calm spell, with room to spare
         * (a quarter of the low mark, at most 512 MiB) */
        uint64_t spare = low / 4 < (512ull << 20) ? low / 4 : (512ull << 20);
        if (since_cause_ns >= PRESSURE_CALM_NS && available >= low + spare)
                return cur - 1;
        return cur;
}

static bool promoted(const struct region *r)
{
        return r && r->state != REGION_RESERVED && !(r->flags & REGION_F_NO_PROMOTE);
}

enum promote_action policy_first_fault(const struct region *prev2, const struct region *prev,
                                       const struct region *next, unsigned page, bool dense_predict)
{
        if (!dense_predict)
                return PROMOTE_NONE;
        /* A sequential stream continuing into this region: it must have gone
         * through two promoted regions. One is not enough: memory that
         * interleaves dense and sparse regions would promote the sparse
         * region after each dense one, and then the next after it. */
        if (promoted(prev) && promoted(prev2) && page < 16)
                return PROMOTE_NATIVE;
        /* Surrounded by promoted regions: dense memory, fill the gap. */
        if (promoted(prev) && promoted(next))
                return PROMOTE_NATIVE;
        return PROMOTE_NONE;
}

unsigned policy_native_ahead(const struct region_table *t, uint64_t idx, uint64_t first_idx, uint64_t end_idx,
                             unsigned max)
{
        unsigned behind = 0, ahead = 0;

        while (behind < max && idx >= first_idx + behind + 1 &&
               promoted(region_lookup(t, idx - behind - 1)))
                behind++;
        while (ahead < behind && idx + ahead + 1 < end_idx &&
               !region_lookup(t, idx + ahead + 1))
                ahead++;
        return ahead;
}

static bool dense(const struct policy_density *d)
{
        return d->made >= POLICY_LEARN_MIN && (uint64_t)d->promoted * 100 >= (uint64_t)d->made * POLICY_LEARN_DENSE_PCT;
}

unsigned policy_learned_threshold(unsigned threshold, const struct policy_density *range,
                                  const struct policy_density *client)
{
        const struct policy_density *d = range->made >= POLICY_LEARN_MIN ? range : client;
        if (!dense(d))
                return threshold;
        return threshold >= 8 ? threshold / 8 : 1;
}

void policy_density_note(struct policy_density *d, enum policy_density_event e)
{
        switch (e) {
        case POLICY_REGION_MADE:
                if (d->made < UINT32_MAX)
                        d->made++;
                break;
        case POLICY_REGION_DENSE:
                if (d->promoted < d->made)
                        d->promoted++;
                break;
        case POLICY_REGION_LEARNED:
                if (d->made > d->promoted)
                        d->made--;
                break;
        }
}

bool policy_should_promote(const struct region *r, unsigned threshold, bool whole_region)
{
        return whole_region && r->state == REGION_RESERVED && !(r->flags & REGION_F_NO_PROMOTE) &&
               r->populated >= threshold;
}
