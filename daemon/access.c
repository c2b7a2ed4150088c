/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * access.c: who may connect. Identity comes only from the kernel: the peer's
 * SO_PEERCRED and a pidfd for that same peer (SO_PEERPIDFD, else
 * pidfd_open of the SO_PEERCRED pid, checked to still be alive after the
 * group lookup). Who is allowed: root, AllowedUsers= and members of
 * AllowedGroups= (hugepaged.conf, resolved by reload.c). Never trusts
 * anything the client says about itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "manager.h"
#include "util.h"

/* Is any gid of `l` among the supplementary groups of pid (from /proc/PID/status)? */
static int pid_in_groups(pid_t pid, const struct id_list *l)
{
        char path[64], line[4096];
        _cleanup_(fclosep_) FILE *f = NULL;

        if (l->n == 0)
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                if (strncmp(line, "Groups:", 7) != 0)
                        continue;
                char *p = line + 7, *end;
                for (;;) {
                        errno = 0;
                        unsigned long g = strtoul(p, &end, 10);
                        if (end == p)
                                break;
                        for (size_t i = 0; i < l->n; i++)
                                if ((gid_t)g == l->v[i])
                                        return 1;
                        p = end;
                }
                return 0;
        }
        return 0;
}

static bool id_listed(const struct id_list *l, uint32_t id)
{
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i] == id)
                        return true;
        return false;
}

static int pidfd_alive(int pidfd)
{
        return syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0 ? -errno : 0;
}

int access_check_peer(struct manager *m, int sock, pid_t *ret_pid, uid_t *ret_uid, gid_t *ret_gid,
                      int *ret_pidfd, char *why, size_t whylen)
{
        struct ucred cred;
        socklen_t len = sizeof(cred);
        _cleanup_close_ int pidfd = -1;
        int r;

        if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        len = sizeof(pidfd);
        if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0) {
                pidfd = -1;
                if (cred.pid <= 0)
                        return -ESRCH;
                pidfd = hp_pidfd_open(cred.pid, 0);
                if (pidfd < 0)
                        return -errno;
        }

        bool allowed = cred.uid == 0 || id_listed(&m->allowed_uids, cred.uid) ||
                       id_listed(&m->allowed_gids, cred.gid);
        if (!allowed) {
                r = pid_in_groups(cred.pid, &m->allowed_gids);
                if (r < 0)
                        return r;
                allowed = r > 0;
        }
        r = pidfd_alive(pidfd);
        if (r < 0)
                return r;       /* the pid may have been reused: trust nothing we read */
        if (!allowed) {
                struct passwd *pw = getpwuid(cred.uid);
                char groups[96] = "";
                for (char **g = m->cfg.allowed_groups; g && *g; g++)
                        snprintf(groups + strlen(groups), sizeof(groups) - strlen(groups), "%s'%s'",
                                 groups[0] ? ", " : "", *g);
                if (m->allowed_gids.n)
                        snprintf(why, whylen, "user %s (uid %u) is not root, not in AllowedUsers= and in none of "
                                 "the groups %s", pw ? pw->pw_name : "?", (unsigned)cred.uid, groups);
                else
                        snprintf(why, whylen, "user %s (uid %u) is not root and not allowed (AllowedUsers=, "
                                 "AllowedGroups= in hugepaged.conf)", pw ? pw->pw_name : "?", (unsigned)cred.uid);
                *ret_pid = cred.pid;
                *ret_uid = cred.uid;
                return -EACCES;
        }
        *ret_pid = cred.pid;
        *ret_uid = cred.uid;
        *ret_gid = cred.gid;
        *ret_pidfd = take_fd(&pidfd);
        return 0;
}
