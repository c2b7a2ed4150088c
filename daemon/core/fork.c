/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fork.c: a child forked without exec (its shim connected again from its
 * atfork handler) takes over the ranges its parent has registered.
 *
 * Owns: finding the parent of a client (the PPid of its /proc status, a live
 * client of the same uid) and registering the parent's ranges in the child's
 * mm through their backends, each checked against the child's own mappings
 * exactly like a REGISTER.
 *
 * Must never: act on the parent's mm or records, trust anything the child
 * says (it says nothing but "inherit"), or register more than the child
 * could have asked for range by range (MaxRangesPerClient=, the backend's
 * checks). Main thread; never blocks.
 *
 * Kernel behaviour relied on: without UFFD_FEATURE_EVENT_FORK a child's VMAs
 * lose the parent's uffd registration; the memory itself is copy-on-write,
 * so registering the child's holes MISSING again changes no byte it reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "backend.h"
#include "client.h"
#include "fork.h"
#include "log.h"
#include "manager.h"
#include "util.h"

/* The PPid: line of /proc/PID/status: the pid, or -errno. */
static pid_t read_ppid(pid_t pid)
{
        char path[64], buf[1024];
        _cleanup_close_ int fd = -1;
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return n < 0 ? -errno : -EIO;
        buf[n] = '\0';
        const char *p = strstr(buf, "\nPPid:");
        if (!p)
                return -EIO;
        long v = strtol(p + 6, NULL, 10);
        return v > 0 ? (pid_t)v : -ESRCH;
}

static void inherit(struct client *c, struct client *p, const struct hp_header *req);

void client_inherit(struct client *c, const struct hp_header *req)
{
        struct manager *m = c->m;
        char text[HP_ERROR_TEXT];

        pid_t ppid = read_ppid(c->pid);
        /* the status read may be of a process that reused the pid */
        if (ppid < 0 || access_pidfd_alive(c->fds->pidfd) < 0) {
                client_reply(c, req->seq, -ESRCH, "cannot read the parent of this process");
                return;
        }
        struct client *p = client_by_pid(m, ppid);
        if (!p || p == c || p->uid != c->uid) {
                snprintf(text, sizeof(text), "the parent, pid %d, is not a client of uid %u", (int)ppid,
                         (unsigned)c->uid);
                client_reply(c, req->seq, -ESRCH, text);
                return;
        }

        /* c is locked (a request); the parent too from here: its fault
         * thread may be changing its ranges. */
        client_lock(p);
        inherit(c, p, req);
        client_unlock(p);
}

static void inherit(struct client *c, struct client *p, const struct hp_header *req)
{
        struct manager *m = c->m;
        unsigned done = 0, tried = 0;

        /* The parent's own policy layer (SET_POLICY) goes with its ranges. */
        c->layers.client = p->layers.client;
        client_policy_update(c);

        for (size_t i = 0; i < p->ranges.n && c->ranges.n < m->cfg.max_ranges; i++) {
                const struct range *rg = &p->ranges.v[i];
                const struct backend *b = backend_of(rg->backend);
                char why[160] = "";

                /* A second HP_MSG_INHERIT, or a range the child registered
                 * itself since: what it has stays as it is. */
                if (!b || !b->fork_inherits || !b->register_range || range_overlaps(&c->ranges, rg->start, rg->end))
                        continue;
                struct hp_range_req r = {
                        .hdr = *req,
                        .addr = rg->start,
                        .length = rg->end - rg->start,
                        .backend = rg->backend,
                        .threshold = rg->threshold,
                };
                tried++;
                /* Memory the child unmapped or replaced since the fork fails
                 * the backend's checks and stays the child's alone. */
                if (b->register_range(c, &r, why, sizeof(why)) == 0)
                        done++;
                else
                        log_debug("client %d: not inherited %#" PRIx64 "-%#" PRIx64 ": %s", c->pid, rg->start,
                                  rg->end, why);
        }
        log_debug("client %d (%s): forked from client %d, inherited %u of %u ranges", c->pid, c->comm, p->pid,
                  done, tried);
        client_reply(c, req->seq, 0, NULL);
}
