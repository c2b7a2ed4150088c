/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * access.c: who may connect. Identity comes only from the kernel: the peer's
 * SO_PEERCRED and a pidfd for that same peer (SO_PEERPIDFD, else
 * pidfd_open of the SO_PEERCRED pid, checked to still be alive after the
 * group lookup). Who is allowed: root, AllowedUsers= and members of
 * AllowedGroups= (hugepaged.conf, resolved by reload.c). Never trusts
 * anything the client says about itself, nor a uffd it passes (it must act
 * on the client's own memory: access_check_uffd).
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "access.h"
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

int access_pidfd_alive(int pidfd)
{
        return pidfd_alive(pidfd);
}

/* mm->start_stack of pid: field 28 of /proc/PID/stat (0 without ptrace-read access). */
static int read_start_stack(pid_t pid, uint64_t *ret)
{
        char path[64], buf[1024];
        _cleanup_close_ int fd = -1;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return n < 0 ? -errno : -EIO;
        buf[n] = '\0';
        /* comm may hold spaces and parentheses: fields start after the last ')' */
        char *p = strrchr(buf, ')');
        if (!p)
                return -EIO;
        p++;    /* the space before field 3 */
        for (int field = 3; field < 28; field++) {
                p = strchr(p + 1, ' ');
                if (!p)
                        return -EIO;
        }
        errno = 0;
        unsigned long long v = strtoull(p + 1, NULL, 10);
        if (errno)
                return -EIO;
        *ret = v;
        return 0;
}

/*
 * A uffd acts on the mm of the process that created it, and nothing in the
 * file says which one that is. A client could pass one made by another
 * process (which then would have to cooperate: a uffd is never inherited or
 * sent by our client code) and the daemon would register that process's
 * memory while checking the client's maps. Probe instead: UFFDIO_UNREGISTER
 * of the page at the client's start_stack succeeds only if that address is
 * mapped (anonymous: the stack) in the uffd's mm, and on a uffd that has
 * nothing registered yet it changes nothing. A uffd of another program
 * fails it (-EINVAL: not mapped there, ASLR placing stacks apart); one of a
 * fork of the client shares the layout and passes, which is harmless: the
 * parent had to hand it over.
 */
int access_check_uffd(int pidfd, pid_t pid, int uffd, char *why, size_t whylen)
{
        uint64_t stack = 0;
        int r;

        r = read_start_stack(pid, &stack);
        if (r < 0)
                return r;
        r = pidfd_alive(pidfd);
        if (r < 0)
                return r;       /* pid reused: what we read is not the client's */
        if (stack == 0) {
                snprintf(why, whylen, "cannot read the stack address of pid %d", (int)pid);
                return -EPERM;
        }
        struct uffdio_range probe = { .start = stack & ~(uint64_t)4095, .len = 4096 };
        if (ioctl(uffd, UFFDIO_UNREGISTER, &probe) == 0)
                return 0;
        if (errno != EINVAL)
                return -errno;
        snprintf(why, whylen, "the userfaultfd was not created by pid %d: it belongs to another process", (int)pid);
        return -EPERM;
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
                /* Only a kernel without SO_PEERPIDFD (< 6.5) falls back to
                 * the pid; on others a failure means the peer has exited
                 * (some kernels refuse reaped peers) and its pid may
                 * already name another process. */
                if (errno != ENOPROTOOPT)
                        return errno == EINVAL ? -ESRCH : -errno;
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
