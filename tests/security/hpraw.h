/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hpraw.h: a bare client of the hugepaged protocol for the security and
 * reliability tests. Unlike common/conn.c it sends whatever it is told to:
 * any bytes, any fd, any message in any state, and it can stop anywhere in
 * the handshake. Header-only; test code, never installed.
 */
#ifndef HP_TEST_RAW_H
#define HP_TEST_RAW_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "hugepaged-protocol.h"
#include "util.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

union raw_buf {
        struct hp_header hdr;
        struct hp_hello_reply hello_reply;
        struct hp_stats_reply stats;
        struct hp_error error;
        char bytes[HP_MSG_MAX];
};

/* One reply as the client saw it. */
struct raw_reply {
        int kind;               /* RAW_REPLY, RAW_ERROR, RAW_CLOSED, RAW_TIMEOUT, RAW_OTHER */
        int status;             /* header status of REPLY/ERROR */
        uint16_t type;
        char text[HP_ERROR_TEXT];
        int fd;                 /* passed fd, or -1 */
};

enum { RAW_REPLY = 1, RAW_ERROR, RAW_CLOSED, RAW_TIMEOUT, RAW_OTHER };

static inline double raw_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Connect (blocking socket); -errno on failure. */
static inline int raw_connect(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Send a request of `len` bytes; the header's length and seq are filled in
 * only if fill is true (hostile cases set their own). */
static inline int raw_send(int sock, void *msg, size_t len, int type, uint32_t seq, bool fill, int fd)
{
        if (fill && len >= sizeof(struct hp_header))
                hp_header_init(msg, (enum hp_msg_type)type, (uint32_t)len, seq, 0);
        return hp_send_fd(sock, msg, len, fd);
}

/* Wait up to timeout_ms for one packet and classify it. */
static inline void raw_recv(int sock, int timeout_ms, struct raw_reply *rep)
{
        union raw_buf b;
        struct pollfd p = { .fd = sock, .events = POLLIN };

        memset(rep, 0, sizeof(*rep));
        rep->fd = -1;
        int n = poll(&p, 1, timeout_ms);
        if (n == 0) {
                rep->kind = RAW_TIMEOUT;
                return;
        }
        ssize_t len = hp_recv_fd(sock, &b, sizeof(b), &rep->fd, MSG_DONTWAIT);
        if (len == 0 || len == -ECONNRESET) {
                rep->kind = RAW_CLOSED;
                return;
        }
        if (len < 0 || hp_msg_check(&b, (size_t)len) < 0) {
                rep->kind = RAW_OTHER;
                return;
        }
        rep->type = b.hdr.type;
        rep->status = b.hdr.status;
        if (b.hdr.type == HP_MSG_ERROR) {
                rep->kind = RAW_ERROR;
                b.error.text[sizeof(b.error.text) - 1] = '\0';
                snprintf(rep->text, sizeof(rep->text), "%s", b.error.text);
        } else if (b.hdr.type == HP_MSG_REPLY || b.hdr.type == HP_MSG_HELLO_REPLY ||
                   b.hdr.type == HP_MSG_STATS_REPLY) {
                rep->kind = RAW_REPLY;
        } else {
                rep->kind = RAW_OTHER;
        }
}

/* Is the connection closed by the daemon (EOF within timeout_ms)? Data
 * before the EOF is skipped. */
static inline bool raw_closed(int sock, int timeout_ms)
{
        double end = raw_now_ms() + timeout_ms;
        for (;;) {
                struct raw_reply r;
                int left = (int)(end - raw_now_ms());
                raw_recv(sock, left > 0 ? left : 0, &r);
                if (r.fd >= 0)
                        close(r.fd);
                if (r.kind == RAW_CLOSED)
                        return true;
                if (r.kind == RAW_TIMEOUT)
                        return false;
        }
}

/* HELLO; on success *devfd is the daemon's /dev/userfaultfd. 0 or -status. */
static inline int raw_hello(int sock, int *devfd, struct raw_reply *rep)
{
        struct hp_hello h = { 0 };
        struct raw_reply local;

        if (!rep)
                rep = &local;
        *devfd = -1;
        if (raw_send(sock, &h, sizeof(h), HP_MSG_HELLO, 1, true, -1) < 0)
                return -EPIPE;
        raw_recv(sock, 10000, rep);
        if (rep->kind == RAW_REPLY && rep->type == HP_MSG_HELLO_REPLY && rep->fd >= 0) {
                *devfd = rep->fd;
                return 0;
        }
        if (rep->fd >= 0)
                close(rep->fd);
        return rep->kind == RAW_ERROR ? rep->status : -EPROTO;
}

/* A new uffd from the daemon's device fd. */
static inline int raw_new_uffd(int devfd)
{
        int fd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        return fd < 0 ? -errno : fd;
}

/* Send uffd and wait for the reply: 0 or -status. */
static inline int raw_send_uffd(int sock, int uffd, struct raw_reply *rep)
{
        struct hp_header h;
        struct raw_reply local;

        if (!rep)
                rep = &local;
        if (raw_send(sock, &h, sizeof(h), HP_MSG_UFFD, 2, true, uffd) < 0)
                return -EPIPE;
        raw_recv(sock, 10000, rep);
        if (rep->fd >= 0)
                close(rep->fd);
        if (rep->kind == RAW_REPLY && rep->type == HP_MSG_REPLY)
                return rep->status;
        return rep->kind == RAW_ERROR ? rep->status : -EPROTO;
}

/* The whole handshake the way libhugepaged does it; keeps no uffd. */
static inline int raw_handshake(int sock)
{
        int devfd, uffd, r;

        r = raw_hello(sock, &devfd, NULL);
        if (r < 0)
                return r;
        uffd = raw_new_uffd(devfd);
        close(devfd);
        if (uffd < 0)
                return uffd;
        r = raw_send_uffd(sock, uffd, NULL);
        close(uffd);
        return r;
}

/* Connect and complete the handshake: the socket, or -errno. */
static inline int raw_open(const char *path)
{
        int sock = raw_connect(path);
        if (sock < 0)
                return sock;
        int r = raw_handshake(sock);
        if (r < 0) {
                close(sock);
                return r;
        }
        return sock;
}

/* A range request and its reply: 0 or -status (-ETIMEDOUT, -EPIPE). */
static inline int raw_range(int sock, int type, uint64_t addr, uint64_t len, uint32_t threshold,
                            struct raw_reply *rep)
{
        struct hp_range_req req = { .addr = addr, .length = len, .backend = HP_RANGE_ANON, .threshold = threshold };
        struct raw_reply local;

        if (!rep)
                rep = &local;
        if (raw_send(sock, &req, sizeof(req), type, 7, true, -1) < 0)
                return -EPIPE;
        raw_recv(sock, 10000, rep);
        if (rep->fd >= 0)
                close(rep->fd);
        if (rep->kind == RAW_REPLY || rep->kind == RAW_ERROR)
                return rep->status;
        return rep->kind == RAW_TIMEOUT ? -ETIMEDOUT : -EPIPE;
}

#endif
