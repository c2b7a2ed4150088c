/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * coverage.c: how much of each client's anonymous memory hugepaged manages.
 * Programs keep memory where the shim cannot see it (glibc's brk heap and
 * its internal mmaps, mappings under --min-size); this says how much, per
 * client and in total, so an operator sees which programs escape.
 *
 *   managed bytes    2 MiB per huge region plus 4 KiB per populated page of
 *                    the others, from the client's region table (no system
 *                    call);
 *   anonymous bytes  "Anonymous:" of /proc/PID/smaps_rollup;
 *   coverage         managed / anonymous, in per-mille, capped at 1000.
 *
 * Owns: the last Anonymous read of each client (a small table by client id).
 * Runs on the main thread, from the heartbeat tick.
 *
 * Cost: reading smaps_rollup walks every page table of the process under its
 * mmap_lock (read side): some microseconds per MiB mapped with 4 KiB pages,
 * a few per GiB of huge pages; it waits while the process (or a promotion)
 * holds the lock for writing. So: each client is read at most once per
 * COVERAGE_INTERVAL_NS, and at most COVERAGE_READS_PER_TICK clients per tick,
 * the stalest first; with many clients the figures just get older.
 *
 * Must never: read a process that is not the client (the pid is checked
 * against the client's pidfd after the read), block on anything but the
 * read itself, or let a failed read disturb the client (the figure stays
 * as it was).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "client.h"
#include "coverage.h"
#include "log.h"
#include "manager.h"
#include "region.h"
#include "util.h"

#define COVERAGE_INTERVAL_NS (1000ull * 1000000ull)
#define COVERAGE_READS_PER_TICK 4

struct coverage_entry {
        uint64_t id;            /* client id */
        uint64_t managed;       /* both at the last read, so that they match */
        uint64_t anonymous;
        uint64_t read_ns;       /* 0: never read */
};

/* Main thread only. One entry per ready client, sorted by id (binary search:
 * a tick and a snapshot cost O(clients log clients)). */
static struct coverage_entry *coverage_v;
static size_t coverage_n, coverage_cap;

/* Index of id, or of where it would go. */
static size_t entry_index(uint64_t id)
{
        size_t lo = 0, hi = coverage_n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (coverage_v[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static struct coverage_entry *entry_find(uint64_t id)
{
        size_t i = entry_index(id);
        return i < coverage_n && coverage_v[i].id == id ? &coverage_v[i] : NULL;
}

/* Find or add; may move every entry (realloc): callers hold no pointers across it. */
static int entry_add(uint64_t id)
{
        size_t i = entry_index(id);

        if (i < coverage_n && coverage_v[i].id == id)
                return 0;
        if (coverage_n == coverage_cap) {
                size_t cap = coverage_cap ? coverage_cap * 2 : 16;
                struct coverage_entry *v = realloc(coverage_v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                coverage_v = v;
                coverage_cap = cap;
        }
        memmove(&coverage_v[i + 1], &coverage_v[i], (coverage_n - i) * sizeof(*coverage_v));
        coverage_v[i] = (struct coverage_entry){ .id = id };
        coverage_n++;
        return 0;
}

static void entry_remove(uint64_t id)
{
        size_t i = entry_index(id);

        if (i < coverage_n && coverage_v[i].id == id) {
                memmove(&coverage_v[i], &coverage_v[i + 1], (coverage_n - i - 1) * sizeof(*coverage_v));
                coverage_n--;
        }
}

static uint64_t managed_bytes(struct client *c)
{
        uint64_t pages = 0;

        for (size_t i = 0; i < c->regions.cap; i++) {
                struct region *r = c->regions.slots[i];
                if (!r)
                        continue;
                pages += r->state == REGION_HUGE ? HP_REGION_PAGES : r->populated;
        }
        return pages * (HP_REGION_SIZE / HP_REGION_PAGES);
}

/* Anonymous of c's smaps_rollup: 0 or -errno. */
static int read_anonymous(struct client *c, uint64_t *ret)
{
        char path[64], buf[4096];
        _cleanup_close_ int fd = -1;
        ssize_t n;
        size_t len = 0;
        int r;

        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", c->pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
                len += (size_t)n;
        buf[len] = '\0';
        /* still alive now: the pid named the client during the read */
        r = access_pidfd_alive(c->fds->pidfd);
        if (r < 0)
                return r;
        return coverage_parse_anonymous(buf, ret);
}

void coverage_tick(struct manager *m)
{
        struct client *pick[COVERAGE_READS_PER_TICK];
        uint64_t pick_ns[COVERAGE_READS_PER_TICK];
        uint64_t now = now_ns();
        size_t n = 0;

        /* every ready client has an entry (added here, removed when it goes) */
        for (struct client *c = m->clients; c; c = c->next)
                if (c->state == CLIENT_READY && entry_add(c->id) < 0)
                        return;

        /* the stalest few due for a read, oldest first */
        for (struct client *c = m->clients; c; c = c->next) {
                struct coverage_entry *e;
                size_t i;

                if (c->state != CLIENT_READY || !(e = entry_find(c->id)))
                        continue;
                if (e->read_ns && now - e->read_ns < COVERAGE_INTERVAL_NS)
                        continue;
                for (i = n; i > 0 && pick_ns[i - 1] > e->read_ns; i--)
                        if (i < COVERAGE_READS_PER_TICK) {
                                pick[i] = pick[i - 1];
                                pick_ns[i] = pick_ns[i - 1];
                        }
                if (i < COVERAGE_READS_PER_TICK) {
                        pick[i] = c;
                        pick_ns[i] = e->read_ns;
                        if (n < COVERAGE_READS_PER_TICK)
                                n++;
                }
        }

        for (size_t k = 0; k < n; k++) {
                struct client *c = pick[k];
                struct coverage_entry *e = entry_find(c->id);
                uint64_t anon, managed;
                int r = read_anonymous(c, &anon);

                e->read_ns = now ? now : 1;
                if (r < 0) {
                        log_debug_errno(-r, "client %d (%s): smaps_rollup: %m", c->pid, c->comm);
                        continue;
                }
                client_lock(c);
                managed = managed_bytes(c);
                client_unlock(c);
                e->anonymous = anon;
                e->managed = managed;
                log_debug("client %d (%s) coverage: managed_bytes=%" PRIu64 " anonymous_bytes=%" PRIu64
                          " coverage_permille=%" PRIu64, c->pid, c->comm, managed, anon,
                          coverage_permille(managed, anon));
        }
}

void coverage_get(struct client *c, struct coverage *ret)
{
        struct coverage_entry *e = entry_find(c->id);

        ret->managed_bytes = e ? e->managed : 0;
        ret->anonymous_bytes = e ? e->anonymous : 0;
        ret->permille = coverage_permille(ret->managed_bytes, ret->anonymous_bytes);
}

void coverage_client_gone(struct client *c, char *buf, size_t size)
{
        struct coverage_entry *e = entry_find(c->id);
        struct coverage cov;
        size_t l = strlen(buf);

        coverage_get(c, &cov);
        if (l < size)
                snprintf(buf + l, size - l, " managed_bytes=%" PRIu64 " anonymous_bytes=%" PRIu64
                         " coverage_permille=%" PRIu64, cov.managed_bytes, cov.anonymous_bytes, cov.permille);
        if (e)
                entry_remove(c->id);
}
