/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pressure.h: the host's memory pressure, as a level with hysteresis
 * (pressure.c): a PSI trigger on /proc/pressure/memory polled by the loop,
 * and MemAvailable read on the heartbeat. Main thread.
 *
 *   PRESSURE_NONE  promotions and hand-offs go ahead (within each client's
 *                  cgroup headroom, memcg.h)
 *   PRESSURE_SOME  MemAvailable fell below LowMemAvailable=, or a PSI trigger
 *                  fired (every non-idle task stalled on memory at once for
 *                  150 ms within 2 s) with less than twice that available:
 *                  no promotions, no hand-offs to the kernel, no pool growth
 *                  or fill ahead; pool pages nobody holds go back
 *   PRESSURE_HIGH  MemAvailable below half of LowMemAvailable=: the same
 * The level falls one step once neither cause was seen for
 * PRESSURE_CALM_NS and MemAvailable is back above LowMemAvailable= plus a
 * quarter of it (at most 512 MiB more).
 */
#ifndef HP_PRESSURE_H
#define HP_PRESSURE_H

#include <stdbool.h>
#include <stdint.h>

#include "loop.h"
#include "policy.h"

struct manager;

struct pressure {
        int psi_fd;             /* the trigger, or -1 (no PSI: MemAvailable only) */
        int meminfo_fd;
        struct watch w_psi;
        enum pressure_level level;      /* written by the main thread, read atomically (pressure_level) */
        uint64_t last_cause_ns; /* when a cause was last seen */
        uint64_t low_bytes;     /* LowMemAvailable= in bytes, resolved */
        uint64_t mem_total, mem_available;      /* last read, bytes; mem_total also read atomically (pressure_mem_total) */
        uint64_t events;        /* rises from NONE */
        uint64_t triggers;      /* PSI triggers seen */
        uint64_t rise_ns;       /* when the level last rose from NONE (0: not since a release) */
        uint64_t first_release_ns;      /* the latest rise's time to its first release, ns */
        uint64_t released_bytes;        /* given back because of pressure, in total */
};

/* Before privileges are dropped: open /proc/pressure/memory and arm a trigger
 * (or say once why not), open /proc/meminfo. */
void pressure_open(struct manager *m);
/* Once the loop runs: watch the trigger. */
int pressure_start(struct manager *m);
void pressure_stop(struct manager *m);
/* Heartbeat: MemAvailable, then the level (hysteresis). Calls the backends'
 * `pressure` operation when the level changes. */
void pressure_tick(struct manager *m);
/* Both safe on any thread. */
enum pressure_level pressure_level(const struct manager *m);
uint64_t pressure_mem_total(const struct manager *m);     /* bytes, from the last read */
/* A backend gave `bytes` back because of pressure (counts the first release
 * after a rise). */
void pressure_released(struct manager *m, uint64_t bytes);

#endif
