/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vma.c: walks a client's mappings with PROCMAP_QUERY on its
 * /proc/PID/maps (O(log n) per VMA, kernel 6.11+), for the backends'
 * checks of what their ranges are. Read-only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "compat.h"
#include "vma.h"
#include "util.h"

#define VMA_CHECK_MAX 100000    /* VMAs walked per request at most */

static int call_ok(const struct procmap_query *q, const char *name, void *data, char *why, size_t whylen)
{
        vma_ok_fn ok = *(vma_ok_fn *)data;
        return ok(q, name, why, whylen);
}

int vma_walk(int maps_fd, uint64_t start, uint64_t end, vma_ok_fn ok, const char *kind, char *why, size_t whylen)
{
        return vma_walk_data(maps_fd, start, end, call_ok, &ok, kind, why, whylen);
}

int vma_walk_data(int maps_fd, uint64_t start, uint64_t end, vma_check_fn check, void *data, const char *kind,
                  char *why, size_t whylen)
{
        uint64_t addr = start;

        for (unsigned i = 0; addr < end; i++) {
                char name[64] = "";
                struct procmap_query q = {
                        .size = sizeof(q),
                        .query_addr = addr,
                        .vma_name_size = sizeof(name),
                        .vma_name_addr = (uint64_t)(uintptr_t)name,
                };
                if (i >= VMA_CHECK_MAX) {
                        snprintf(why, whylen, "range spans more than %d mappings", VMA_CHECK_MAX);
                        return -E2BIG;
                }
                if (ioctl(maps_fd, PROCMAP_QUERY, &q) < 0) {
                        int e = -errno;
                        if (e == -ENOTTY || e == -EINVAL)
                                return -ENOTTY;
                        if (e == -ENOENT || e == -ENAMETOOLONG) {
                                snprintf(why, whylen, "%#" PRIx64 " is not %s", addr,
                                         e == -ENOENT ? "mapped" : kind);
                                return -EFAULT;
                        }
                        return e;
                }
                if (q.vma_start > addr) {
                        snprintf(why, whylen, "%#" PRIx64 " is not mapped", addr);
                        return -EFAULT;
                }
                int r = check(&q, name, data, why, whylen);
                if (r < 0)
                        return r;
                addr = q.vma_end;
        }
        return 0;
}

int vma_bounds(int maps_fd, uint64_t addr, uint64_t *lo, uint64_t *hi)
{
        struct procmap_query q = { .size = sizeof(q), .query_addr = addr };

        if (maps_fd < 0)
                return -EBADF;
        if (ioctl(maps_fd, PROCMAP_QUERY, &q) < 0)
                return -errno;
        *lo = q.vma_start;
        *hi = q.vma_end;
        return 0;
}

int vma_within(int maps_fd, uint64_t addr, uint64_t lo, uint64_t hi)
{
        uint64_t s = 0, e = 0;
        int r = vma_bounds(maps_fd, addr, &s, &e);
        return r < 0 ? r : s >= lo && e <= hi;
}

