/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * access.h: who may connect, and whether what a peer passes is its own (access.c).
 */
#ifndef HP_ACCESS_H
#define HP_ACCESS_H

#include <stddef.h>
#include <sys/types.h>

struct manager;

int access_check_peer(struct manager *m, int sock, pid_t *pid, uid_t *uid, gid_t *gid,
                      int *pidfd, char *why, size_t whylen);
/* Was uffd created by the client itself (pidfd, pid)? 0, -EPERM with why set, or -errno. */
int access_check_uffd(int pidfd, pid_t pid, int uffd, char *why, size_t whylen);
/* Is the process of pidfd still alive (so its pid still names it)? 0 or -ESRCH. */
int access_pidfd_alive(int pidfd);

#endif
