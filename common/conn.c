/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * conn.c: the client end of the hugepaged protocol (see conn.h).
 *
 * Owns: the client's socket while it is alive, the handshake, and matching
 * each request with its single reply.
 *
 * Must never: allocate (it runs inside the shim's mmap()), keep the uffd or
 * the /dev/userfaultfd fd past the handshake, touch an fd that stopped being
 * our socket, wait without a timeout, or print anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "conn.h"
#include "util.h"

/* Largest errno value; a status outside [-HP_ERRNO_MAX, 0] is malformed. */
#define HP_ERRNO_MAX 4095

/* Room for any packet either side sends, aligned for the message structs. */
union hp_msg_buf {
        struct hp_header hdr;
        struct hp_hello_reply hello_reply;
        struct hp_stats_reply stats_reply;
        struct hp_error error;
        char bytes[HP_MSG_MAX];
};

_Static_assert(sizeof(struct hp_stats) == sizeof(struct hugepaged_stats),
               "struct hp_stats and struct hugepaged_stats must stay in step");

void hp_conn_init(struct hp_conn *c)
{
        *c = (struct hp_conn) HP_CONN_NULL;
}

const char *hp_conn_socket_path(const char *path)
{
        const char *e;

        if (path && *path)
                return path;
        /* secure_getenv: a set-uid program must not hand its uffd to a socket
         * its caller picked. */
        e = secure_getenv(HP_ENV_SOCKET);
        if (e && *e)
                return e;
        return HUGEPAGED_DEFAULT_SOCKET;
}

static int sockaddr_fill(struct sockaddr_un *sa, socklen_t *ret_len, const char *path)
{
        size_t n = strlen(path);

        *sa = (struct sockaddr_un) { .sun_family = AF_UNIX };
        if (n == 0)
                return -EINVAL;
        if (path[0] == '@') {
                /* abstract namespace: no trailing NUL in the address */
                if (n > sizeof(sa->sun_path))
                        return -ENAMETOOLONG;
                memcpy(sa->sun_path + 1, path + 1, n - 1);
                *ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
                return 0;
        }
        if (n >= sizeof(sa->sun_path))
                return -ENAMETOOLONG;
        memcpy(sa->sun_path, path, n + 1);
        *ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
}

static int socket_set_timeouts(int fd, uint32_t ms)
{
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        /* SO_SNDTIMEO also bounds connect(2) waiting on a full backlog. */
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        return 0;
}

/* With a deadline, the socket's timeouts are what is left of it: 0, or
 * -ETIMEDOUT once it has passed. */
static int conn_arm(const struct hp_conn *c, int fd)
{
        struct timespec ts;
        uint64_t now, left_us;

        if (!c->deadline_ns)
                return 0;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
                return -errno;
        now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        if (now >= c->deadline_ns)
                return -ETIMEDOUT;
        left_us = (c->deadline_ns - now + 999) / 1000;
        struct timeval tv = { .tv_sec = (time_t)(left_us / 1000000), .tv_usec = (suseconds_t)(left_us % 1000000) };
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        return 0;
}

/* Move fd to HP_CONN_FD_MIN or above if the fd limit allows; else keep it. */
static int fd_move_high(int fd)
{
        int n = fcntl(fd, F_DUPFD_CLOEXEC, HP_CONN_FD_MIN);

        if (n < 0)
                return fd;
        safe_close(fd);
        return n;
}

static void conn_set_error(struct hp_conn *c, const char *text)
{
        size_t n = strnlen(text, sizeof(c->error) - 1);

        memcpy(c->error, text, n);
        c->error[n] = '\0';
}

/* Say what a connection error means, unless the daemon already said why. */
static void conn_describe(struct hp_conn *c, int r)
{
        if (c->error[0])
                return;
        if (r == -ETIMEDOUT)
                conn_set_error(c, "the daemon did not answer in time");
        else if (r == -ENOTCONN)
                conn_set_error(c, "the daemon closed the connection");
        else if (r == -EPROTO)
                conn_set_error(c, "the daemon sent a malformed or unexpected reply");
}

/* The connection is lost: close our socket, and never use it again. */
static int conn_fail(struct hp_conn *c, int r)
{
        conn_describe(c, r);
        c->fd = safe_close(c->fd);
        c->dead = true;
        return r;
}

static int conn_send(struct hp_conn *c, void *msg, enum hp_msg_type type, size_t len, int fd)
{
        int r;

        hp_header_init(msg, type, (uint32_t)len, ++c->seq, 0);
        r = conn_arm(c, c->fd);
        if (r < 0)
                return r;
        r = hp_send_fd(c->fd, msg, len, fd);
        if (r == -EAGAIN)
                return -ETIMEDOUT;
        if (r == -EPIPE || r == -ECONNRESET)
                return -ENOTCONN;
        return r;
}

/*
 * Receive the reply to the last request: returns its type, with a valid
 * header for it (seq matches, status 0 or -errno, error text terminated), or
 * -errno. ret_fd: where a passed fd goes (NULL: close any).
 */
static int conn_recv(struct hp_conn *c, union hp_msg_buf *buf, int *ret_fd)
{
        _cleanup_close_ int fd = -1;
        ssize_t n;
        int type;

        type = conn_arm(c, c->fd);
        if (type < 0)
                return type;
        n = hp_recv_fd(c->fd, buf, sizeof(*buf), ret_fd ? &fd : NULL, 0);
        if (n == -EAGAIN)
                return -ETIMEDOUT;
        if (n == 0 || n == -ECONNRESET)
                return -ENOTCONN;
        if (n == -EMSGSIZE)
                return -EPROTO;
        if (n < 0)
                return (int)n;

        type = hp_msg_check(buf, (size_t)n);
        if (type == -EPROTONOSUPPORT) {
                char text[HP_ERROR_TEXT];
                snprintf(text, sizeof(text), "the daemon speaks protocol version %u, this client %u",
                         (unsigned)buf->hdr.version, HP_VERSION);
                conn_set_error(c, text);
        }
        if (type < 0)
                return -EPROTO;
        if (buf->hdr.seq != c->seq)
                return -EPROTO;

        switch (type) {
        case HP_MSG_ERROR:
                if (buf->hdr.status >= 0 || buf->hdr.status < -HP_ERRNO_MAX)
                        return -EPROTO;
                buf->error.text[sizeof(buf->error.text) - 1] = '\0';
                conn_set_error(c, buf->error.text);
                break;
        case HP_MSG_REPLY:
                if (buf->hdr.status > 0 || buf->hdr.status < -HP_ERRNO_MAX)
                        return -EPROTO;
                break;
        case HP_MSG_HELLO_REPLY:
        case HP_MSG_STATS_REPLY:
                if (buf->hdr.status != 0)
                        return -EPROTO;
                break;
        default:
                /* a request type coming from the daemon */
                return -EPROTO;
        }

        if (ret_fd)
                *ret_fd = take_fd(&fd);
        return type;
}

/* Make our own uffd: from the daemon's device fd, or by userfaultfd(2) if the
 * daemon sent none (it may decide the client is allowed to). */
static int uffd_create(struct hp_conn *c, int devfd)
{
        int fd;

        if (devfd >= 0)
                fd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        else
                fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
                int r = -errno;
                conn_set_error(c, devfd >= 0 ? "cannot create a userfaultfd from the daemon's /dev/userfaultfd"
                                             : "the daemon sent no /dev/userfaultfd and userfaultfd(2) is not permitted");
                return r;
        }
        return fd;
}

/* The daemon's refusal of the handshake; its protocol complaints are -EPROTO. */
static int handshake_error(int status)
{
        switch (status) {
        case -EBADMSG:
        case -EPROTONOSUPPORT:
        case -EOPNOTSUPP:
        case -EMSGSIZE:
                return -EPROTO;
        default:
                return status;
        }
}

static int conn_handshake(struct hp_conn *c)
{
        _cleanup_close_ int devfd = -1, uffd = -1;
        union hp_msg_buf buf;
        struct hp_hello hello = {};
        struct hp_header uffd_msg = {};
        int r;

        r = conn_send(c, &hello, HP_MSG_HELLO, sizeof(hello), -1);
        if (r < 0)
                return r;
        r = conn_recv(c, &buf, &devfd);
        if (r < 0)
                return r;
        if (r == HP_MSG_ERROR)
                return handshake_error(buf.hdr.status);
        if (r != HP_MSG_HELLO_REPLY)
                return -EPROTO;
        if (buf.hello_reply.version != HP_VERSION) {
                conn_set_error(c, "the daemon speaks another protocol version");
                return -EPROTO;
        }
        c->daemon_version = buf.hello_reply.version;
        c->daemon_features = buf.hello_reply.features;

        uffd = uffd_create(c, devfd);
        devfd = safe_close(devfd);
        if (uffd < 0)
                return uffd;

        r = conn_send(c, &uffd_msg, HP_MSG_UFFD, sizeof(uffd_msg), uffd);
        /* Never keep a copy: once the daemon's reference goes, every
         * registration goes with it and faults are the kernel's again. */
        uffd = safe_close(uffd);
        if (r < 0)
                return r;
        r = conn_recv(c, &buf, NULL);
        if (r < 0)
                return r;
        if (r == HP_MSG_ERROR)
                return handshake_error(buf.hdr.status);
        if (r != HP_MSG_REPLY)
                return -EPROTO;
        return buf.hdr.status;
}

int hp_conn_open(struct hp_conn *c, const char *path)
{
        _cleanup_close_ int fd = -1;
        uint32_t timeout_ms = c->timeout_ms ? c->timeout_ms : HP_CONN_TIMEOUT_MS;
        struct sockaddr_un sa;
        socklen_t salen;
        struct stat st;
        int r;

        if (c->fd >= 0)
                return -EISCONN;
        c->dead = false;
        c->error[0] = '\0';
        c->seq = 0;

        r = sockaddr_fill(&sa, &salen, path);
        if (r < 0)
                return r;

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        r = socket_set_timeouts(fd, timeout_ms);
        if (r < 0)
                return r;
        r = conn_arm(c, fd);
        if (r < 0)
                return r;
        do
                r = connect(fd, (struct sockaddr *)&sa, salen);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
                r = -errno;
                if (r == -EACCES)
                        conn_set_error(c, "no permission to connect to the daemon's socket");
                if (r == -EAGAIN) {
                        r = -ETIMEDOUT;
                        conn_describe(c, r);
                }
                return r;
        }

        fd = fd_move_high(fd);
        if (fstat(fd, &st) < 0)
                return -errno;

        c->fd = fd;
        c->dev = st.st_dev;
        c->ino = st.st_ino;
        c->pid = getpid();
        r = conn_handshake(c);
        if (r < 0) {
                conn_describe(c, r);
                /* fd still owns the socket and closes it */
                c->fd = -1;
                return r;
        }
        fd = -1;
        return 0;
}

int hp_conn_set_timeout(struct hp_conn *c, uint32_t timeout_ms)
{
        if (!hp_conn_alive(c))
                return -ENOTCONN;
        c->timeout_ms = timeout_ms;
        return socket_set_timeouts(c->fd, timeout_ms ? timeout_ms : HP_CONN_TIMEOUT_MS);
}

void hp_conn_close(struct hp_conn *c)
{
        uint32_t timeout_ms = c->timeout_ms;
        struct stat st;

        /* After fork the child closes its inherited copy too, so no pid check;
         * but an fd the program reused for something else is not ours. */
        if (c->fd >= 0 && fstat(c->fd, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
                safe_close(c->fd);
        hp_conn_init(c);
        c->timeout_ms = timeout_ms;
}

bool hp_conn_alive(struct hp_conn *c)
{
        struct stat st;

        if (!hp_conn_is_open(c))
                return false;
        /* A child made by a raw clone/fork: the connection registers ranges in
         * the parent's mm, so never use it. Leave the state alone, it may be
         * shared with a vfork parent. */
        if (getpid() != c->pid)
                return false;
        if (fstat(c->fd, &st) < 0 || st.st_dev != c->dev || st.st_ino != c->ino) {
                /* closed or reused by the program: not ours to close */
                c->fd = -1;
                c->dead = true;
                return false;
        }
        return true;
}

/* hp_conn_call(), and the fd the reply carries (-1 if none) in *ret_fd. */
static int conn_call(struct hp_conn *c, enum hp_msg_type type, void *req, size_t len, void *reply_buf,
                     enum hp_msg_type expect, int *ret_fd)
{
        union hp_msg_buf *buf = reply_buf;
        int r;

        if (ret_fd)
                *ret_fd = -1;
        if (!hp_conn_alive(c))
                return -ENOTCONN;
        c->error[0] = '\0';

        r = conn_send(c, req, type, len, -1);
        if (r < 0)
                return conn_fail(c, r);
        r = conn_recv(c, buf, ret_fd);
        if (r < 0)
                return conn_fail(c, r);

        if (r == HP_MSG_ERROR || (r == HP_MSG_REPLY && (expect == HP_MSG_REPLY || buf->hdr.status < 0))) {
                if (ret_fd && buf->hdr.status < 0)
                        *ret_fd = safe_close(*ret_fd);
                return buf->hdr.status;
        }
        if (r == (int)expect)
                return 0;
        if (ret_fd)
                *ret_fd = safe_close(*ret_fd);
        return conn_fail(c, -EPROTO);
}

int hp_conn_call(struct hp_conn *c, enum hp_msg_type type, void *req, size_t len,
                 void *reply_buf, enum hp_msg_type expect)
{
        return conn_call(c, type, req, len, reply_buf, expect, NULL);
}

static int conn_range(struct hp_conn *c, enum hp_msg_type type, uint64_t addr, uint64_t length,
                      uint32_t threshold, uint32_t backend)
{
        struct hp_range_req req = {
                .addr = addr,
                .length = length,
                .backend = backend,
                .threshold = threshold,
        };
        union hp_msg_buf buf;

        return hp_conn_call(c, type, &req, sizeof(req), &buf, HP_MSG_REPLY);
}

int hp_conn_register(struct hp_conn *c, uint64_t addr, uint64_t length, uint32_t threshold)
{
        return conn_range(c, HP_MSG_REGISTER, addr, length, threshold, HP_RANGE_ANON);
}

int hp_conn_register_hugetlb(struct hp_conn *c, uint64_t addr, uint64_t length)
{
        return conn_range(c, HP_MSG_REGISTER, addr, length, 0, HP_RANGE_HUGETLB);
}

int hp_conn_hugetlb_reserve(struct hp_conn *c, uint64_t pages, uint32_t flags)
{
        struct hp_hugetlb_req req = { .pages = pages, .flags = flags };
        union hp_msg_buf buf;

        return hp_conn_call(c, HP_MSG_HUGETLB_RESERVE, &req, sizeof(req), &buf, HP_MSG_REPLY);
}

int hp_conn_shmem_create(struct hp_conn *c, uint64_t length, int *ret_fd)
{
        struct hp_shmem_req req = { .length = length };
        union hp_msg_buf buf;
        int fd = -1, r;

        r = conn_call(c, HP_MSG_SHMEM_CREATE, &req, sizeof(req), &buf, HP_MSG_REPLY, &fd);
        if (r < 0)
                return r;
        if (fd < 0)
                return conn_fail(c, -EPROTO);
        *ret_fd = fd;
        return 0;
}

int hp_conn_register_shmem(struct hp_conn *c, uint64_t addr, uint64_t length, uint32_t threshold)
{
        return conn_range(c, HP_MSG_REGISTER, addr, length, threshold, HP_RANGE_SHMEM);
}

int hp_conn_unregister(struct hp_conn *c, uint64_t addr, uint64_t length)
{
        return conn_range(c, HP_MSG_UNREGISTER, addr, length, 0, HP_RANGE_ANON);
}

int hp_conn_sync(struct hp_conn *c, uint64_t addr, uint64_t length)
{
        return conn_range(c, HP_MSG_SYNC, addr, length, 0, HP_RANGE_ANON);
}

int hp_conn_set_policy(struct hp_conn *c, uint32_t threshold, uint32_t flags)
{
        struct hp_policy req = { .threshold = threshold, .flags = flags };
        union hp_msg_buf buf;

        return hp_conn_call(c, HP_MSG_SET_POLICY, &req, sizeof(req), &buf, HP_MSG_REPLY);
}

int hp_conn_get_stats(struct hp_conn *c, struct hp_stats *ret)
{
        struct hp_header req = {};
        union hp_msg_buf buf;
        int r;

        r = hp_conn_call(c, HP_MSG_GET_STATS, &req, sizeof(req), &buf, HP_MSG_STATS_REPLY);
        if (r < 0)
                return r;
        *ret = buf.stats_reply.stats;
        return 0;
}

int hp_conn_inherit(struct hp_conn *c)
{
        struct hp_header req = {};
        union hp_msg_buf buf;

        return hp_conn_call(c, HP_MSG_INHERIT, &req, sizeof(req), &buf, HP_MSG_REPLY);
}

static int parse_u64(const char **p, uint64_t *ret)
{
        const char *s = *p;
        uint64_t v = 0;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        for (; *s >= '0' && *s <= '9'; s++) {
                unsigned d = (unsigned)(*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *p = s;
        *ret = v;
        return 0;
}

int hp_parse_size(const char *s, uint64_t *ret)
{
        unsigned shift = 0;
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        r = parse_u64(&s, &v);
        if (r < 0)
                return r;
        switch (*s) {
        case '\0':           break;
        case 'k': case 'K':  shift = 10; s++; break;
        case 'm': case 'M':  shift = 20; s++; break;
        case 'g': case 'G':  shift = 30; s++; break;
        default:             return -EINVAL;
        }
        if (*s != '\0')
                return -EINVAL;
        if (shift && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = v << shift;
        return 0;
}

int hp_parse_threshold(const char *s, unsigned min, unsigned *ret)
{
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        r = parse_u64(&s, &v);
        if (r < 0)
                return r;
        if (*s != '\0')
                return -EINVAL;
        if (v < min || v > HP_REGION_PAGES)
                return -ERANGE;
        *ret = (unsigned)v;
        return 0;
}
