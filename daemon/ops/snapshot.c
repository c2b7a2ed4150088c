/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshot.c: builds a struct snapshot from the manager. Runs on the main
 * thread (it reads clients and region tables); the cost is one pass over
 * every client's regions and ranges, a few times a second at most
 * (heartbeat.c decides when).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "client.h"
#include "manager.h"
#include "pressure.h"
#include "snapshot.h"
#include "trace.h"

/* One map lookup for a pid, a walk of the map for 0; zeros when tracing is off. */
static void kernel_read(struct trace *t, pid_t pid, struct snapshot_kernel *k)
{
        struct trace_stats ts;

        if (!t || trace_read(t, pid, &ts) < 0)
                return;
        *k = (struct snapshot_kernel){ .faults = ts.faults,
                                       .fault_p50_ns = ts.fault_p50_ns,
                                       .fault_p99_ns = ts.fault_p99_ns,
                                       .collapse_ok = ts.collapse_ok,
                                       .collapse_mapped = ts.collapse_mapped,
                                       .collapse_failed = ts.collapse_failed,
                                       .khugepaged_ok = ts.khugepaged_ok,
                                       .thp_splits = ts.thp_splits };
}

static int by_pid(const void *a, const void *b)
{
        const struct snapshot_client *x = a, *y = b;
        return (x->pid > y->pid) - (x->pid < y->pid);
}

static int by_pid_id(const void *a, const void *b)
{
        const struct snapshot_client *x = a, *y = b;
        int r = by_pid(a, b);
        return r ? r : (x->id > y->id) - (x->id < y->id);
}

/*
 * One entry per pid: hugepaged-run's probe connection and the shim in the
 * program it execs share a pid for a moment; the newest connection is the
 * one that lives on.
 */
static void dedup(struct snapshot *s)
{
        size_t k = 0;
        for (size_t i = 0; i < s->n; i++) {
                if (i + 1 < s->n && s->v[i + 1].pid == s->v[i].pid) {
                        free(s->v[i].ranges);
                        continue;
                }
                s->v[k++] = s->v[i];
        }
        s->n = k;
}

/* c locked: its entry. 0 or -ENOMEM. */
static int snapshot_client(struct manager *m, const struct snapshot *s, struct client *c, struct snapshot_client *e)
{
        e->id = c->id;
        e->pid = c->pid;
        e->uid = c->uid;
        memcpy(e->comm, c->comm, sizeof(e->comm));
        memcpy(e->exe, c->exe, sizeof(e->exe));
        client_stats(c, &e->s);
        e->max_window = c->policy.max_window;
        e->dense_predict = c->policy.dense_predict;
        e->policy_explicit = policy_explicit(&c->layers);
        kernel_read(m->trace, c->pid, &e->kernel);
        backends_read_counters(m, c, e->backend);
        uint64_t limit;
        e->budget = (struct snapshot_budget){
                .promotions_skipped_headroom = c->c.skipped_headroom,
                .promotions_skipped_pressure = c->c.skipped_pressure,
                .promotions_skipped_bloat = c->c.skipped_bloat,
                .bloat_bytes = c->bloat_pages << 12,    /* recounted by client_stats above */
        };
        e->budget.cgroup_room_bytes = memcg_room(&c->memcg, s->taken_ns, &limit);
        e->budget.cgroup_limit_bytes = limit == UINT64_MAX ? 0 : limit;
        if (e->budget.cgroup_room_bytes == UINT64_MAX)
                e->budget.cgroup_room_bytes = 0;
        coverage_get(c, &e->coverage);
        if (c->ranges.n) {
                e->ranges = calloc(c->ranges.n, sizeof(*e->ranges));
                if (!e->ranges)
                        return -ENOMEM;
                for (size_t i = 0; i < c->ranges.n; i++)
                        e->ranges[i] = (struct snapshot_range){ .start = c->ranges.v[i].start,
                                                                .end = c->ranges.v[i].end,
                                                                .threshold = c->ranges.v[i].threshold };
                e->n_ranges = c->ranges.n;
        }
        return 0;
}

struct snapshot *snapshot_take(struct manager *m)
{
        struct snapshot *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->refs = 1;
        s->taken_ns = now_ns();
        s->v = m->nclients ? calloc(m->nclients, sizeof(*s->v)) : NULL;
        if (m->nclients && !s->v)
                return snapshot_unref(s);

        for (struct client *c = m->clients; c; c = c->next) {
                if (c->state != CLIENT_READY || s->n >= m->nclients)
                        continue;
                struct snapshot_client *e = &s->v[s->n];
                client_lock(c);
                int r = snapshot_client(m, s, c, e);
                client_unlock(c);
                s->n++;         /* its ranges are freed with s either way */
                if (r < 0)
                        return snapshot_unref(s);
                s->total.regions_reserved += e->s.regions_reserved;
                s->total.pages_reserved_unused += e->s.pages_reserved_unused;
                s->total.regions_huge += e->s.regions_huge;
                s->total.ranges += e->s.ranges;
        }
        qsort(s->v, s->n, sizeof(*s->v), by_pid_id);
        dedup(s);

        s->clients = s->n;
        for (size_t i = 0; i < s->n; i++) {
                s->coverage.managed_bytes += s->v[i].coverage.managed_bytes;
                s->coverage.anonymous_bytes += s->v[i].coverage.anonymous_bytes;
        }
        s->coverage.permille = coverage_permille(s->coverage.managed_bytes, s->coverage.anonymous_bytes);
        s->tracing = m->trace != NULL;
        kernel_read(m->trace, 0, &s->kernel);
        s->n_counters = backend_counters(s->counters, BACKEND_COUNTERS_MAX);
        backends_read_counters(m, NULL, s->backend);
        struct counters *t = malloc(sizeof(*t));        /* ~4 KiB of histograms: not on the stack */
        if (!t)
                return snapshot_unref(s);
        client_totals(m, t);
        s->total.faults_served = t->faults_served;
        s->total.pages_populated = t->pages_populated;
        s->total.promotions = t->promotions;
        s->total.promotions_failed = t->promotions_failed;
        s->total.reservations_released = t->reservations_released;
        s->fault_latency_ns = t->fault_latency_ns;
        s->promotion_latency_ns = t->promotion_latency_ns;
        s->total.fault_latency_p50_ns = histogram_quantile(&t->fault_latency_ns, 0.50);
        s->total.fault_latency_p99_ns = histogram_quantile(&t->fault_latency_ns, 0.99);
        s->total.promotion_latency_p50_ns = histogram_quantile(&t->promotion_latency_ns, 0.50);
        s->total.promotion_latency_p99_ns = histogram_quantile(&t->promotion_latency_ns, 0.99);
        const struct pressure *p = &m->pressure;
        s->budget = (struct snapshot_budget){
                .promotions_skipped_headroom = t->skipped_headroom,
                .promotions_skipped_pressure = t->skipped_pressure,
                .promotions_skipped_bloat = t->skipped_bloat,
                .bloat_bytes = manager_bloat_pages(m) << 12,
                .pressure_level = pressure_level(m),
                .pressure_events = p->events,
                .pressure_triggers = p->triggers,
                .pressure_released_bytes = p->released_bytes,
                .pressure_first_release_ns = p->first_release_ns,
                .mem_available_bytes = p->mem_available,
        };
        free(t);
        s->total.threshold = m->cfg.threshold;
        s->threshold = m->cfg.threshold;
        s->max_window = m->cfg.max_window;
        s->dense_predict = m->cfg.dense_predict;
        snprintf(s->config_file, sizeof(s->config_file), "%s", m->config_loaded ? m->config_path : "");
        return s;
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
        if (s)
                __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
        return s;
}

struct snapshot *snapshot_unref(struct snapshot *s)
{
        if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i].ranges);
        free(s->v);
        free(s);
        return NULL;
}

const struct snapshot_client *snapshot_find(const struct snapshot *s, pid_t pid)
{
        struct snapshot_client key = { .pid = pid };
        if (!s || !s->n)
                return NULL;
        return bsearch(&key, s->v, s->n, sizeof(*s->v), by_pid);
}
