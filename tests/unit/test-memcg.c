/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for daemon/mm/memcg.c: finding the memory cgroup in /proc/PID/cgroup. */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "memcg.h"

int main(void)
{
        char p[64];

        /* a v1 host with the unified hierarchy mounted too (this project's CI) */
        const char *hybrid = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/208d\n1:cpu:/\n0::/\n";
        assert(memcg_parse_proc_cgroup(hybrid, false, p, sizeof(p)) == 0 && strcmp(p, "/process_api/208d") == 0);
        assert(memcg_parse_proc_cgroup(hybrid, true, p, sizeof(p)) == 0 && strcmp(p, "/") == 0);
        /* pure v2 */
        const char *v2 = "0::/user.slice/user-1000.slice/session-2.scope\n";
        assert(memcg_parse_proc_cgroup(v2, true, p, sizeof(p)) == 0 &&
               strcmp(p, "/user.slice/user-1000.slice/session-2.scope") == 0);
        assert(memcg_parse_proc_cgroup(v2, false, p, sizeof(p)) == -ENOENT);
        /* memory among other controllers, not a prefix of another name; no final newline */
        assert(memcg_parse_proc_cgroup("3:cpu,memory,pids:/a/b", false, p, sizeof(p)) == 0 && strcmp(p, "/a/b") == 0);
        assert(memcg_parse_proc_cgroup("3:memory_x:/a\n", false, p, sizeof(p)) == -ENOENT);
        /* "10::/x" is no v2 line */
        assert(memcg_parse_proc_cgroup("10::/x\n", true, p, sizeof(p)) == -ENOENT);
        /* too long for the buffer */
        assert(memcg_parse_proc_cgroup("0::/aaaaaaaaaaaaaaaa\n", true, p, 8) == -ENAMETOOLONG);
        assert(memcg_parse_proc_cgroup("", true, p, sizeof(p)) == -ENOENT);
        printf("memcg: ok\n");
        return 0;
}
