/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * memcg.c: a client's memory cgroup (memcg.h). The cgroup is found from
 * /proc/PID/cgroup (the "memory" line on v1, the "0::" line on v2) under the
 * usual mount points; the files of each limited level are kept open, and
 * usage is read with one pread per level at most every MEMCG_READ_NS.
 * Read-only; nothing here writes to a cgroup. A file that cannot be read
 * leaves the client unlimited (the promotion then proceeds as it would
 * without this check), and the caller says so once.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memcg.h"
#include "util.h"

#define MEMCG_READ_NS (20ull * 1000000ull)      /* usage is read again after this */
#define MEMCG_RECHECK_NS (5000ull * 1000000ull) /* a move to another cgroup is noticed within this */
#define UNLIMITED (1ull << 60)                  /* larger limits are "max" (v1 writes 2^63 - page) */

static const char *const v1_mounts[] = { "/sys/fs/cgroup/memory" };
static const char *const v2_mounts[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };

/* Is `name` one of the comma-separated controllers in ctrl? */
static bool has_controller(const char *ctrl, const char *name)
{
        size_t n = strlen(name);
        for (const char *p = ctrl; *p;) {
                size_t len = strcspn(p, ",");
                if (len == n && strncmp(p, name, n) == 0)
                        return true;
                p += len;
                if (*p == ',')
                        p++;
        }
        return false;
}

int memcg_parse_proc_cgroup(const char *text, bool v2, char *out, size_t outlen)
{
        for (const char *line = text; *line;) {
                size_t len = strcspn(line, "\n");
                const char *a = memchr(line, ':', len);
                const char *b = a ? memchr(a + 1, ':', len - (size_t)(a + 1 - line)) : NULL;
                if (b) {
                        /* ID:CONTROLLERS:PATH; v2's is "0::PATH" */
                        char ctrl[128];
                        size_t clen = (size_t)(b - a - 1);
                        if (clen < sizeof(ctrl)) {
                                memcpy(ctrl, a + 1, clen);
                                ctrl[clen] = '\0';
                                bool match = v2 ? (a == line + 1 && line[0] == '0' && clen == 0)
                                                : has_controller(ctrl, "memory");
                                if (match) {
                                        size_t n = len - (size_t)(b + 1 - line);
                                        if (n >= outlen)
                                                return -ENAMETOOLONG;
                                        memcpy(out, b + 1, n);
                                        out[n] = '\0';
                                        return 0;
                                }
                        }
                }
                line += len;
                if (*line == '\n')
                        line++;
        }
        return -ENOENT;
}

/* The cgroup path of pid for v1's memory controller or v2's unified tree. */
static int cgroup_of(pid_t pid, bool v2, char *out, size_t outlen)
{
        char file[64], text[4096];
        snprintf(file, sizeof(file), "/proc/%d/cgroup", (int)pid);
        _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, text, sizeof(text) - 1);
        if (n < 0)
                return -errno;
        text[n] = '\0';
        return memcg_parse_proc_cgroup(text, v2, out, outlen);
}

static bool v2_has_memory(const char *mount)
{
        char file[128], buf[256] = "";
        snprintf(file, sizeof(file), "%s/cgroup.controllers", mount);
        _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
                return false;
        return strstr(buf, "memory") != NULL;
}

void memcg_close(struct memcg *g)
{
        for (int i = 0; i < g->nlevels; i++) {
                safe_close(g->usage_fd[i]);
                safe_close(g->limit_fd[i]);
        }
        g->nlevels = 0;
}

/* Open the limited levels from dir up to mount. */
static int open_levels(struct memcg *g, const char *mount, const char *rel)
{
        char dir[512];
        const char *usage = g->v2 ? "memory.current" : "memory.usage_in_bytes";
        const char *limit = g->v2 ? "memory.max" : "memory.limit_in_bytes";

        if ((size_t)snprintf(dir, sizeof(dir), "%s%s", mount, rel) >= sizeof(dir))
                return -ENAMETOOLONG;
        for (;;) {
                char uf[600], lf[600];
                snprintf(uf, sizeof(uf), "%s/%s", dir, usage);
                snprintf(lf, sizeof(lf), "%s/%s", dir, limit);
                int lfd = open(lf, O_RDONLY | O_CLOEXEC), ufd = lfd >= 0 ? open(uf, O_RDONLY | O_CLOEXEC) : -1;
                uint64_t l = UINT64_MAX;
                if (lfd >= 0 && ufd >= 0 && hp_pread_u64(lfd, &l) == 0 && l < UNLIMITED &&
                    g->nlevels < MEMCG_LEVELS) {
                        g->usage_fd[g->nlevels] = ufd;
                        g->limit_fd[g->nlevels] = lfd;
                        g->limit[g->nlevels] = l;
                        g->nlevels++;
                } else {
                        safe_close(lfd);
                        safe_close(ufd);
                }
                if (strlen(dir) <= strlen(mount))
                        break;
                char *slash = strrchr(dir, '/');
                if (!slash || slash < dir + strlen(mount))
                        break;
                *slash = '\0';
        }
        return 0;
}

int memcg_open(struct memcg *g, pid_t pid, char *why, size_t whylen)
{
        char rel[256];
        int r;

        *g = MEMCG_NULL;
        for (size_t i = 0; i < sizeof(v2_mounts) / sizeof(v2_mounts[0]); i++)
                if (v2_has_memory(v2_mounts[i])) {
                        g->v2 = true;
                        r = cgroup_of(pid, true, rel, sizeof(rel));
                        if (r < 0) {
                                snprintf(why, whylen, "no cgroup v2 entry in /proc/%d/cgroup: %s", (int)pid,
                                         strerror(-r));
                                return r;
                        }
                        snprintf(g->path, sizeof(g->path), "%s", rel);
                        return open_levels(g, v2_mounts[i], rel);
                }
        r = cgroup_of(pid, false, rel, sizeof(rel));
        if (r < 0) {
                snprintf(why, whylen, "no memory cgroup in /proc/%d/cgroup: %s", (int)pid, strerror(-r));
                return r;
        }
        snprintf(g->path, sizeof(g->path), "%s", rel);
        return open_levels(g, v1_mounts[0], rel);
}

void memcg_recheck(struct memcg *g, pid_t pid, uint64_t now)
{
        char rel[256], why[160];

        if (now - g->checked_ns < MEMCG_RECHECK_NS)
                return;
        g->checked_ns = now;
        if (cgroup_of(pid, g->v2, rel, sizeof(rel)) < 0 || strcmp(rel, g->path) == 0) {
                /* the same cgroup: limits may have changed */
                for (int i = 0; i < g->nlevels; i++)
                        (void)hp_pread_u64(g->limit_fd[i], &g->limit[i]);
                return;
        }
        memcg_close(g);
        (void)memcg_open(g, pid, why, sizeof(why));
        g->checked_ns = now;
}

uint64_t memcg_room(struct memcg *g, uint64_t now, uint64_t *limit)
{
        *limit = UINT64_MAX;
        if (g->nlevels == 0)
                return UINT64_MAX;
        if (!g->read_ns || now - g->read_ns >= MEMCG_READ_NS) {
                uint64_t room = UINT64_MAX;
                for (int i = 0; i < g->nlevels; i++) {
                        uint64_t u = 0;
                        if (hp_pread_u64(g->usage_fd[i], &u) < 0)
                                continue;
                        uint64_t left = g->limit[i] > u ? g->limit[i] - u : 0;
                        if (left < room)
                                room = left;
                }
                g->room = room;
                g->granted = 0;
                g->read_ns = now;
        }
        for (int i = 0; i < g->nlevels; i++)
                if (g->limit[i] < *limit)
                        *limit = g->limit[i];
        return g->room > g->granted ? g->room - g->granted : 0;
}

void memcg_charge(struct memcg *g, uint64_t bytes)
{
        g->granted += bytes;
}
