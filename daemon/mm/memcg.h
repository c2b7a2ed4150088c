/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * memcg.h: a client's memory cgroup, read cheaply (memcg.c): how much room
 * its limit leaves, so that no promotion pushes a program that fits at 4 KiB
 * over its limit. cgroup v2 (memory.max, memory.current) and v1
 * (memory.limit_in_bytes, memory.usage_in_bytes); every ancestor with a
 * limit counts (the tightest wins). Main thread.
 */
#ifndef HP_MEMCG_H
#define HP_MEMCG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define MEMCG_LEVELS 4          /* limited cgroups watched, from the client's own up */

struct memcg {
        int nlevels;            /* 0: no limit anywhere (or unreadable: see `why`) */
        int usage_fd[MEMCG_LEVELS], limit_fd[MEMCG_LEVELS];
        uint64_t limit[MEMCG_LEVELS];   /* read at open and on refresh */
        bool v2;
        char path[256];         /* the client's cgroup, as /proc/PID/cgroup says */
        uint64_t read_ns;       /* when usage was last read */
        uint64_t room;          /* the tightest limit - usage then */
        uint64_t granted;       /* bytes promoted since that read */
        uint64_t checked_ns;    /* when /proc/PID/cgroup was last read */
};

#define MEMCG_NULL ((struct memcg){ .nlevels = 0 })

/* Pure: the path of the memory cgroup in the text of /proc/PID/cgroup (v1:
 * the line whose controllers include memory; v2: the "0::" line). 0,
 * -ENOENT or -ENAMETOOLONG. */
int memcg_parse_proc_cgroup(const char *text, bool v2, char *out, size_t outlen);
/* Find and open pid's memory cgroup. 0 (nlevels may be 0: no limit), or
 * -errno with why set (the caller then treats it as no limit, and says so). */
int memcg_open(struct memcg *g, pid_t pid, char *why, size_t whylen);
void memcg_close(struct memcg *g);
/* Reopen if the process moved to another cgroup (checked at most every few
 * seconds). */
void memcg_recheck(struct memcg *g, pid_t pid, uint64_t now);
/* Room left under the tightest limit, in bytes, read at most every
 * MEMCG_READ_NS (promotions granted since are taken off); UINT64_MAX when
 * nothing limits the client. *limit: that limit (UINT64_MAX: none). */
uint64_t memcg_room(struct memcg *g, uint64_t now, uint64_t *limit);
/* A promotion of `bytes` was granted: take it off the room until the next read. */
void memcg_charge(struct memcg *g, uint64_t bytes);

#endif
