/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * backend.c: the list of backends (the one place that names them) and the
 * loops the core uses to call every backend at once. Main thread, but
 * backends_span_gone: a fault thread (the client locked).
 */
#include <string.h>

#include "backend.h"
#include "log.h"

extern const struct backend backend_anon;
extern const struct backend backend_hugetlb;
extern const struct backend backend_shmem;

/* Indexed by HP_RANGE_*: a new kind of memory is one line here. */
const struct backend *const backends[] = {
        [HP_RANGE_ANON] = &backend_anon,
        [HP_RANGE_HUGETLB] = &backend_hugetlb,
        [HP_RANGE_SHMEM] = &backend_shmem,
};
const size_t n_backends = sizeof(backends) / sizeof(backends[0]);

const struct backend *backend_of(uint32_t kind)
{
        return kind < n_backends ? backends[kind] : NULL;
}

const struct backend *backend_for_request(uint32_t type)
{
        for (size_t i = 0; i < n_backends; i++)
                if (backends[i]->request_type && backends[i]->request_type == type)
                        return backends[i];
        return NULL;
}

void backends_prepare(struct manager *m)
{
        for (size_t i = 0; i < n_backends; i++)
                if (backends[i]->prepare)
                        backends[i]->prepare(m);
}

int backends_start(struct manager *m)
{
        for (size_t i = 0; i < n_backends; i++) {
                int r = backends[i]->start ? backends[i]->start(m) : 0;
                if (r < 0)
                        return log_error_errno(r, "cannot start the %s backend: %m", backends[i]->name);
        }
        return 0;
}

void backends_stop(struct manager *m)
{
        for (size_t i = n_backends; i-- > 0;)
                if (backends[i]->stop)
                        backends[i]->stop(m);
}

void backends_tick(struct manager *m)
{
        for (size_t i = 0; i < n_backends; i++)
                if (backends[i]->tick)
                        backends[i]->tick(m);
}

void backends_client_leaving(struct client *c)
{
        for (size_t i = 0; i < n_backends; i++)
                if (backends[i]->client_leaving)
                        backends[i]->client_leaving(c);
}

void backends_client_gone(struct manager *m, struct client *c)
{
        for (size_t i = 0; i < n_backends; i++)
                if (backends[i]->client_gone)
                        backends[i]->client_gone(m, c);
}

void backends_span_gone(struct client *c, uint64_t start, uint64_t end)
{
        for (size_t i = 0; i < n_backends; i++)
                if (backends[i]->span_gone)
                        backends[i]->span_gone(c, start, end);
}

size_t backend_counters(const struct backend_counter **ret, size_t max)
{
        size_t n = 0;
        for (size_t i = 0; i < n_backends; i++)
                for (size_t k = 0; k < backends[i]->ncounters && n < max; k++)
                        ret[n++] = &backends[i]->counters[k];
        return n;
}

void backends_read_counters(struct manager *m, const struct client *c, uint64_t v[BACKEND_COUNTERS_MAX])
{
        size_t n = 0;

        memset(v, 0, BACKEND_COUNTERS_MAX * sizeof(*v));
        for (size_t i = 0; i < n_backends; i++) {
                const struct backend *b = backends[i];
                if (!b->ncounters)
                        continue;
                if (n + b->ncounters > BACKEND_COUNTERS_MAX)
                        break;
                if (b->read_counters)
                        b->read_counters(m, c, v + n);
                n += b->ncounters;
        }
}
