/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vma.c: checks that a client's range is private anonymous memory (or
 * private anonymous hugetlb memory for the hugetlb backend), with
 * PROCMAP_QUERY on the client's /proc/PID/maps (O(log n) per VMA, kernel
 * 6.11+) and a text parse of the same file on older kernels. Read-only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "compat.h"
#include "manager.h"
#include "util.h"

#define VMA_CHECK_MAX 100000    /* VMAs walked per request at most */

/* Names of anonymous VMAs that may be managed. */
static int anon_name_ok(const char *name)
{
        return name[0] == '\0' || strcmp(name, "[heap]") == 0 || strncmp(name, "[anon:", 6) == 0;
}

static int check_text(pid_t pid, uint64_t start, uint64_t end, char *why, size_t whylen)
{
        char path[64], line[512];
        _cleanup_(fclosep_) FILE *f = NULL;
        uint64_t covered = start;

        snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (covered < end && fgets(line, sizeof(line), f)) {
                uint64_t lo, hi, off;
                char perms[8], dev[16], name[256] = "";
                unsigned long ino;
                if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %15s %lu %255[^\n]", &lo, &hi,
                           perms, &off, dev, &ino, name) < 6)
                        continue;
                if (hi <= covered)
                        continue;
                if (lo > covered)
                        break;
                char *n = name;
                while (*n == ' ')
                        n++;
                if (perms[3] != 'p' || ino != 0 || !anon_name_ok(n)) {
                        snprintf(why, whylen, "%#" PRIx64 "-%#" PRIx64 " is not private anonymous memory (%s %s)",
                                 lo, hi, perms, n[0] ? n : "shared");
                        return -EFAULT;
                }
                covered = hi;
        }
        if (covered < end) {
                snprintf(why, whylen, "%#" PRIx64 " is not mapped", covered);
                return -EFAULT;
        }
        return 0;
}

/* What each VMA of a range must be: 0, or -EFAULT with why set. */
typedef int (*vma_ok_fn)(const struct procmap_query *q, const char *name, char *why, size_t whylen);

/*
 * Check every VMA covering [start, end) with PROCMAP_QUERY: mapped without
 * holes, and ok() for each. -ENOTTY when the kernel has no PROCMAP_QUERY
 * (before 6.11); `kind` names what the memory must be, for messages.
 */
static int walk(int maps_fd, uint64_t start, uint64_t end, vma_ok_fn ok, const char *kind, char *why,
                size_t whylen)
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
                int r = ok(&q, name, why, whylen);
                if (r < 0)
                        return r;
                addr = q.vma_end;
        }
        return 0;
}

static int anon_ok(const struct procmap_query *q, const char *name, char *why, size_t whylen)
{
        if ((q->vma_flags & PROCMAP_QUERY_VMA_SHARED) || q->inode != 0 || q->dev_major || q->dev_minor ||
            !anon_name_ok(name)) {
                snprintf(why, whylen, "%#llx-%#llx is not private anonymous memory (%s)",
                         (unsigned long long)q->vma_start, (unsigned long long)q->vma_end,
                         name[0] ? name : (q->vma_flags & PROCMAP_QUERY_VMA_SHARED) ? "shared" : "file");
                return -EFAULT;
        }
        return 0;
}

int vma_check_anon(int maps_fd, pid_t pid, uint64_t start, uint64_t end, char *why, size_t whylen)
{
        int r = maps_fd < 0 ? -ENOTTY : walk(maps_fd, start, end, anon_ok, "anonymous memory", why, whylen);
        return r == -ENOTTY ? check_text(pid, start, end, why, whylen) : r;
}

int vma_within(int maps_fd, uint64_t addr, uint64_t lo, uint64_t hi)
{
        struct procmap_query q = { .size = sizeof(q), .query_addr = addr };

        if (maps_fd < 0)
                return -EBADF;
        if (ioctl(maps_fd, PROCMAP_QUERY, &q) < 0)
                return -errno;
        return q.vma_start >= lo && q.vma_end <= hi;
}

/* MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB: the kernel's own hugetlbfs file */
static int hugetlb_ok(const struct procmap_query *q, const char *name, char *why, size_t whylen)
{
        if ((q->vma_flags & PROCMAP_QUERY_VMA_SHARED) || q->vma_page_size != HP_REGION_SIZE ||
            strncmp(name, "/anon_hugepage", 14) != 0) {
                snprintf(why, whylen, "%#llx-%#llx is not private anonymous hugetlb memory of 2 MiB pages",
                         (unsigned long long)q->vma_start, (unsigned long long)q->vma_end);
                return -EFAULT;
        }
        return 0;
}

/* PROCMAP_QUERY only (kernel 6.11+): it says the page size of a VMA. */
int vma_check_hugetlb(int maps_fd, uint64_t start, uint64_t end, char *why, size_t whylen)
{
        if (maps_fd < 0) {
                snprintf(why, whylen, "cannot read the process's mappings");
                return -EOPNOTSUPP;
        }
        int r = walk(maps_fd, start, end, hugetlb_ok, "anonymous hugetlb memory", why, whylen);
        if (r == -ENOTTY) {
                snprintf(why, whylen, "the hugetlb backend needs PROCMAP_QUERY (Linux 6.11)");
                return -EOPNOTSUPP;
        }
        return r;
}
