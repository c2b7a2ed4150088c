/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fork.c: the preload shim in a child forked without exec: a connection of
 * its own to the daemon, and the parent's ranges registered again in the
 * child's mm (HP_MSG_INHERIT), so the child is a client under its own pid.
 *
 * Owns: the child's new connection while it is being made (in the storage
 * preload.c hands in) and the bound on how long a child waits for it.
 *
 * Must never: run in the parent (a fork's parent never waits on the daemon),
 * wait more than HP_CONN_FORK_TIMEOUT_MS in all, use the parent's
 * connection (it registers in the parent's mm), allocate, or leave anything
 * open when it fails: the child then runs unmanaged, exactly as without the
 * shim.
 *
 * Kernel behaviour relied on: a forked child's VMAs lose their uffd
 * registration (no UFFD_FEATURE_EVENT_FORK), and its memory is
 * copy-on-write; only its holes fault MISSING once registered again.
 * vfork() and posix_spawn() run no atfork handler: their child shares the
 * parent's mm until it execs, and this file never runs for it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "shim.h"

int shim_fork_connect(struct hp_conn *conn, const char *path, char *why, size_t whylen)
{
        int r;

        struct timespec ts;

        hp_conn_init(conn);
        if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0) {
                snprintf(why, whylen, "clock_gettime: %s", strerror(errno));
                return -errno;
        }
        conn->deadline_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec +
                            (uint64_t)HP_CONN_FORK_TIMEOUT_MS * 1000000u;
        r = hp_conn_open(conn, path);
        if (r < 0) {
                snprintf(why, whylen, "%s", conn->error[0] ? conn->error : strerror(-r));
                hp_conn_close(conn);
                return r;
        }
        r = hp_conn_inherit(conn);
        if (r < 0) {
                snprintf(why, whylen, "inherit: %s", conn->error[0] ? conn->error : strerror(-r));
                hp_conn_close(conn);
                return r;
        }
        /* Made: later requests (SYNC waits for a promotion) get the usual
         * timeout. */
        conn->deadline_ns = 0;
        r = hp_conn_set_timeout(conn, 0);
        if (r < 0) {
                snprintf(why, whylen, "socket timeout: %s", strerror(-r));
                hp_conn_close(conn);
                return r;
        }
        return 0;
}
