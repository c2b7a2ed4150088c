/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pressure.c: the memory pressure level (pressure.h). The PSI trigger is
 * armed before privileges are dropped and polled for POLLPRI by the loop (its
 * window is 2 s: the kernels this was measured on refuse 1 s with EINVAL); MemAvailable is read
 * from /proc/meminfo on each heartbeat (one pread). Without PSI (psi=0, or
 * an old kernel) the level follows MemAvailable alone, and the daemon says
 * so once. Main thread; never blocks.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "backend.h"
#include "log.h"
#include "manager.h"
#include "policy.h"
#include "pressure.h"
#include "util.h"

/* Every non-idle task stalled on memory at once for 150 ms within any 2 s
 * ("full"): the host's pressure. "some" also fires when one cgroup reclaims
 * under its own limit, which is that container's business, not a reason to
 * stop promoting everyone's memory. */
#define PSI_TRIGGER "full 150000 2000000"

static const char *const level_names[] = { "none", "some", "high" };

static void read_meminfo(struct pressure *p)
{
        char buf[4096];
        ssize_t n = p->meminfo_fd >= 0 ? pread(p->meminfo_fd, buf, sizeof(buf) - 1, 0) : -1;
        if (n <= 0)
                return;
        buf[n] = '\0';
        const char *t = strstr(buf, "MemTotal:"), *a = strstr(buf, "MemAvailable:");
        unsigned long long kb;
        if (t && sscanf(t, "MemTotal: %llu kB", &kb) == 1)
                __atomic_store_n(&p->mem_total, kb << 10, __ATOMIC_RELAXED);   /* fault threads read it */
        if (a && sscanf(a, "MemAvailable: %llu kB", &kb) == 1)
                p->mem_available = kb << 10;
}

/* LowMemAvailable=: a size, or a share of MemTotal (default 10%). */
static uint64_t low_bytes(struct manager *m, uint64_t total)
{
        const struct config_size *s = &m->cfg.low_mem_available;
        return s->percent ? total / 100 * s->percent : s->bytes;
}

static void update(struct manager *m, bool psi_fired)
{
        struct pressure *p = &m->pressure;
        uint64_t now = now_ns();

        p->low_bytes = low_bytes(m, p->mem_total);
        if ((psi_fired && p->mem_available / 2 < p->low_bytes) || p->mem_available < p->low_bytes)
                p->last_cause_ns = now;
        enum pressure_level next = policy_pressure_next(p->level, psi_fired, p->mem_available, p->low_bytes,
                                                        now - p->last_cause_ns);
        if (next == p->level)
                return;
        if (p->level == PRESSURE_NONE) {
                p->events++;
                p->rise_ns = now;
        }
        if (next < p->level)
                p->last_cause_ns = now;         /* the next step down waits a calm spell of its own */
        log_notice("memory pressure %s -> %s (MemAvailable %" PRIu64 " MiB, low %" PRIu64 " MiB%s)",
                   level_names[p->level], level_names[next], p->mem_available >> 20, p->low_bytes >> 20,
                   psi_fired ? ", PSI trigger" : "");
        __atomic_store_n(&p->level, next, __ATOMIC_RELAXED);   /* fault threads read it */
        for (size_t i = 0; i < n_backends; i++)
                if (backends[i]->pressure)
                        backends[i]->pressure(m, next);
}

void pressure_released(struct manager *m, uint64_t bytes)
{
        struct pressure *p = &m->pressure;

        p->released_bytes += bytes;
        if (p->rise_ns) {
                p->first_release_ns = now_ns() - p->rise_ns;
                p->rise_ns = 0;
                log_info("memory pressure: first release %" PRIu64 " ms after the rise (%" PRIu64 " KiB)",
                         p->first_release_ns / 1000000, bytes >> 10);
        }
}

void pressure_open(struct manager *m)
{
        struct pressure *p = &m->pressure;

        p->psi_fd = -1;
        p->meminfo_fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
        read_meminfo(p);
        int fd = open("/proc/pressure/memory", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
                log_notice("memory pressure: no PSI (/proc/pressure/memory: %m); following MemAvailable only");
                return;
        }
        if (write(fd, PSI_TRIGGER, strlen(PSI_TRIGGER) + 1) < 0) {
                log_notice("memory pressure: cannot arm a PSI trigger (%m); following MemAvailable only");
                close(fd);
                return;
        }
        p->psi_fd = fd;
}

static void on_psi(struct watch *w, int revents)
{
        struct manager *m = w->data;

        if (revents < 0 || (revents & (POLLERR | POLLNVAL))) {
                log_notice("memory pressure: the PSI trigger failed; following MemAvailable only");
                watch_stop(w, NULL);
                return;
        }
        if (!(revents & POLLPRI))
                return;
        m->pressure.triggers++;
        read_meminfo(&m->pressure);
        update(m, true);
}

int pressure_start(struct manager *m)
{
        struct pressure *p = &m->pressure;

        p->low_bytes = low_bytes(m, p->mem_total);
        if (p->psi_fd >= 0 && watch_start_events(&m->loop, &p->w_psi, p->psi_fd, POLLPRI, on_psi, m) < 0)
                log_warning("memory pressure: cannot watch the PSI trigger; following MemAvailable only");
        log_info("memory pressure: %s, MemAvailable low mark %" PRIu64 " MiB",
                 p->psi_fd >= 0 ? "PSI trigger (" PSI_TRIGGER ")" : "no PSI", p->low_bytes >> 20);
        return 0;
}

void pressure_stop(struct manager *m)
{
        struct pressure *p = &m->pressure;
        p->psi_fd = safe_close(p->psi_fd);
        p->meminfo_fd = safe_close(p->meminfo_fd);
}

void pressure_tick(struct manager *m)
{
        read_meminfo(&m->pressure);
        update(m, false);
}

uint64_t pressure_mem_total(const struct manager *m)
{
        return __atomic_load_n(&m->pressure.mem_total, __ATOMIC_RELAXED);
}

enum pressure_level pressure_level(const struct manager *m)
{
        return __atomic_load_n(&m->pressure.level, __ATOMIC_RELAXED);
}
