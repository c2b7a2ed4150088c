/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * coverage.h: the share of a client's anonymous memory that hugepaged
 * manages: managed bytes (from the daemon's region table) over Anonymous of
 * /proc/PID/smaps_rollup. Main thread only.
 */
#ifndef HP_COVERAGE_H
#define HP_COVERAGE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct client;
struct manager;

/* Both read at the same tick; zeros until the client's first read. */
struct coverage {
        uint64_t managed_bytes;         /* in the client's managed ranges, in use */
        uint64_t anonymous_bytes;       /* Anonymous: of its smaps_rollup */
        uint64_t permille;              /* managed / anonymous, 0..1000 */
};

/* Heartbeat tick: refresh the stalest clients' Anonymous (bounded, see coverage.c). */
void coverage_tick(struct manager *m);

/* The figures of c at its last read (zeros before the first). */
void coverage_get(struct client *c, struct coverage *ret);

/* Pure: the per-mille of managed over anonymous, capped at 1000 (the
 * daemon's count and the kernel's are not taken at the same instant); 0
 * when anonymous is 0. */
static inline uint64_t coverage_permille(uint64_t managed, uint64_t anonymous)
{
        if (!anonymous)
                return 0;
        if (managed >= anonymous)
                return 1000;
        return (uint64_t)((unsigned __int128)managed * 1000 / anonymous);
}

/* Pure: the value of "Anonymous:" in smaps_rollup text, in bytes; -EINVAL if absent. */
static inline int coverage_parse_anonymous(const char *text, uint64_t *ret)
{
        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                unsigned long long kb;
                if (strncmp(p, "Anonymous:", 10) == 0 && sscanf(p + 10, "%llu kB", &kb) == 1 &&
                    kb <= UINT64_MAX / 1024) {
                        *ret = (uint64_t)kb * 1024;
                        return 0;
                }
        }
        return -EINVAL;
}

/* c goes away: append " managed_bytes=... anonymous_bytes=... coverage_permille=..."
 * (the last figures) to buf, which holds a string, and forget c. */
void coverage_client_gone(struct client *c, char *buf, size_t size);

#endif
