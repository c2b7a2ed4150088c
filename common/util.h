/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * util.h: small helpers shared by every part: cleanup attributes, fd passing.
 * Header-only; nothing here allocates or logs.
 */
#ifndef HP_UTIL_H
#define HP_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline void fclosep_(FILE **f) { if (*f) fclose(*f); }
static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) { if (*fd >= 0) { int e = errno; close(*fd); errno = e; } }
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

static inline int safe_close(int fd)
{
        if (fd >= 0) {
                int e = errno;
                close(fd);
                errno = e;
        }
        return -1;
}

static inline int take_fd(int *fd) { int r = *fd; *fd = -1; return r; }

/* The number a sysfs, procfs or cgroup file holds (read from offset 0);
 * "max" is UINT64_MAX. 0, or -errno (-EIO: not a number). */
static inline int hp_pread_u64(int fd, uint64_t *ret)
{
        char buf[64];
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
                return n < 0 ? -errno : -EIO;
        buf[n] = '\0';
        if (strncmp(buf, "max", 3) == 0) {
                *ret = UINT64_MAX;
                return 0;
        }
        char *end;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 10);
        if (errno || end == buf)
                return -EIO;
        *ret = v;
        return 0;
}

/*
 * Send one packet with an optional fd (fd < 0: none). Returns 0 or -errno.
 */
static inline int hp_send_fd(int sock, const void *buf, size_t len, int fd)
{
        union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } u;
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (fd >= 0) {
                memset(&u, 0, sizeof(u));
                mh.msg_control = u.b;
                mh.msg_controllen = sizeof(u.b);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        do
                n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        return (size_t)n == len ? 0 : -EMSGSIZE;
}

/*
 * Receive one packet into buf (cap bytes). *fd gets a passed fd or -1; any
 * extra fds are closed. flags: MSG_DONTWAIT or 0. Returns the packet length,
 * 0 on EOF, or -errno (-EMSGSIZE if the packet was truncated).
 */
static inline ssize_t hp_recv_fd(int sock, void *buf, size_t cap, int *fd, int flags)
{
        union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int) * 4)]; } u;
        struct iovec iov = { .iov_base = buf, .iov_len = cap };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = u.b, .msg_controllen = sizeof(u.b) };
        ssize_t n;

        if (fd)
                *fd = -1;
        do
                n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < nfd; i++) {
                        int f;
                        memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (fd && *fd < 0)
                                *fd = f;
                        else
                                close(f);
                }
        }
        if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
                if (fd && *fd >= 0)
                        *fd = safe_close(*fd);
                return -EMSGSIZE;
        }
        return n;
}

#endif
