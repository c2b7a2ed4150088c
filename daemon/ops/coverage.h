/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * coverage.h: the share of a client's anonymous memory that hugepaged
 * manages: managed bytes (from the daemon's region table) over Anonymous of
 * /proc/PID/smaps_rollup. Main thread only.
 */
#ifndef HP_COVERAGE_H
#define HP_COVERAGE_H

#include <stddef.h>
#include <stdint.h>

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

/* Pure: the per-mille of managed over anonymous, capped at 1000 (the two are
 * read at different moments); 0 when anonymous is 0. */
uint64_t coverage_permille(uint64_t managed, uint64_t anonymous);

/* Pure: the value of "Anonymous:" in smaps_rollup text, in bytes; -EINVAL if absent. */
int coverage_parse_anonymous(const char *text, uint64_t *ret);

/* c goes away: append " managed_bytes=... anonymous_bytes=... coverage_permille=..."
 * (the last figures) to buf, which holds a string, and forget c. */
void coverage_client_gone(struct client *c, char *buf, size_t size);

#endif
