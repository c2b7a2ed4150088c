/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * conn.h: the client end of the hugepaged protocol, shared by libhugepaged,
 * the preload shim and hugepaged-run.
 *
 * Owns: one SOCK_SEQPACKET connection to the daemon in caller-provided
 * storage (struct hp_conn), the handshake, request/reply matching, and the
 * parsers for the client's environment variables.
 *
 * Must never: allocate memory (it runs inside the shim's mmap()), keep a copy
 * of the userfaultfd or of /dev/userfaultfd (a daemon crash must leave the
 * client on ordinary kernel faults), write to or close an fd that is no longer
 * its own socket, block longer than its timeout, or lock anything (callers
 * serialise; one request at a time per connection).
 *
 * Every function returns 0 (or a non-negative value) or -errno. After a
 * timeout, EOF or protocol error the connection is dead: the socket is closed
 * and every later request returns -ENOTCONN without a system call.
 */
#ifndef HP_CONN_H
#define HP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hugepaged-protocol.h"
#include "hugepaged.h"

/* Environment read by the shim, hugepaged-run and hugepaged_connect(NULL). */
#define HP_ENV_SOCKET    "HUGEPAGED_SOCKET"
#define HP_ENV_MIN_SIZE  "HUGEPAGED_MIN_SIZE"
#define HP_ENV_THRESHOLD "HUGEPAGED_THRESHOLD"
#define HP_ENV_BACKEND   "HUGEPAGED_BACKEND"
#define HP_ENV_DEBUG     "HUGEPAGED_DEBUG"
#define HP_ENV_PRELOAD   "HUGEPAGED_PRELOAD"

#define HP_DEFAULT_MIN_SIZE HP_REGION_SIZE

/* Receive and send timeout; a hung daemon must not hang its clients. */
#define HP_CONN_TIMEOUT_MS 10000u

/* A forked child's connection (libclient/fork.c): its connect, handshake
 * and HP_MSG_INHERIT together end after this long (hp_conn.deadline_ns);
 * the child then runs unmanaged. */
#define HP_CONN_FORK_TIMEOUT_MS 250u

/* The socket is moved to this fd number or above, out of the way of
 * programs that close or dup2 over the low fds at start-up. */
#define HP_CONN_FD_MIN 100

struct hp_conn {
        int fd;                 /* -1: never opened, closed or dead */
        bool dead;              /* was open, then lost: requests get -ENOTCONN */
        pid_t pid;              /* process that opened it */
        dev_t dev;              /* identity of the socket, to detect fd reuse */
        ino_t ino;
        uint32_t seq;           /* seq of the last request sent */
        uint32_t timeout_ms;    /* 0: HP_CONN_TIMEOUT_MS */
        uint64_t deadline_ns;   /* CLOCK_MONOTONIC; not 0: every wait (connect,
                                 * send, receive) ends by then, -ETIMEDOUT */
        uint32_t daemon_version;
        uint32_t daemon_features;
        char error[HP_ERROR_TEXT]; /* the daemon's last error text, or "" */
};

#define HP_CONN_NULL { .fd = -1 }

void hp_conn_init(struct hp_conn *c);

/*
 * The socket to use: path if not NULL, else $HUGEPAGED_SOCKET (ignored in
 * set-uid programs), else HUGEPAGED_DEFAULT_SOCKET. Never NULL.
 */
const char *hp_conn_socket_path(const char *path);

/*
 * Connect to the socket at path (a leading '@' names an abstract socket) and
 * complete the handshake. On failure nothing stays open; c->error may say why
 * (always for -EACCES). Errors: -ENOENT/-ECONNREFUSED (no daemon), -EACCES
 * (refused), -EPROTO (protocol mismatch), -ETIMEDOUT, -ENAMETOOLONG, -EISCONN
 * (c already open), anything socket(2)/connect(2)/ioctl(2) return.
 */
int hp_conn_open(struct hp_conn *c, const char *path);

/* Change the send and receive timeout of an open connection (0: the
 * default, HP_CONN_TIMEOUT_MS): 0 or -errno. */
int hp_conn_set_timeout(struct hp_conn *c, uint32_t timeout_ms);

/* Close our socket (only if the fd still is our socket) and reset c. */
void hp_conn_close(struct hp_conn *c);

/*
 * True if c is open, owned by this process, and its fd still is the socket we
 * opened. Costs getpid(2) and fstat(2). A foreign fd marks c dead (without
 * closing it); a different pid (a fork that bypassed atfork handlers) only
 * returns false, leaving the state shared with a vfork parent alone.
 */
bool hp_conn_alive(struct hp_conn *c);

/* True when opened and not dead; no system call. */
static inline bool hp_conn_is_open(const struct hp_conn *c)
{
        return c->fd >= 0 && !c->dead;
}

/*
 * Send a request (its header is filled in here: type, length, seq) and wait
 * for the reply into reply_buf (HP_MSG_MAX bytes, 8-byte aligned). expect is
 * the reply type that carries data (HP_MSG_REPLY or HP_MSG_STATS_REPLY).
 * Returns 0, the daemon's -errno (HP_MSG_ERROR: c->error has its text), or a
 * connection error (-ENOTCONN, -ETIMEDOUT, -EPROTO, ...) after which c is
 * dead. Callers tell the two apart with hp_conn_is_open().
 */
int hp_conn_call(struct hp_conn *c, enum hp_msg_type type, void *req, size_t len,
                 void *reply_buf, enum hp_msg_type expect);

/* The requests, with the return values of hp_conn_call(). */
int hp_conn_register(struct hp_conn *c, uint64_t addr, uint64_t length, uint32_t threshold);
int hp_conn_unregister(struct hp_conn *c, uint64_t addr, uint64_t length);
/* A private anonymous MAP_HUGETLB range (2 MiB aligned and sized). */
int hp_conn_register_hugetlb(struct hp_conn *c, uint64_t addr, uint64_t length);
/* Have `pages` free 2 MiB huge pages in the pool for the next MAP_HUGETLB
 * mmap (0: that mmap failed, drop the request). c->error says why not. */
int hp_conn_hugetlb_reserve(struct hp_conn *c, uint64_t pages, uint32_t flags);
/* A new shared file of `length` bytes on the daemon's huge tmpfs: its fd
 * (close-on-exec) in *ret_fd, ours to close. c->error says why not. */
int hp_conn_shmem_create(struct hp_conn *c, uint64_t length, int *ret_fd);
/* A MAP_SHARED mapping of such a file, from a 2 MiB-aligned address. */
int hp_conn_register_shmem(struct hp_conn *c, uint64_t addr, uint64_t length, uint32_t threshold);
int hp_conn_set_policy(struct hp_conn *c, uint32_t threshold, uint32_t flags);
/* Wait until no promotion is in flight in the range (its VMAs are whole). */
int hp_conn_sync(struct hp_conn *c, uint64_t addr, uint64_t length);
int hp_conn_get_stats(struct hp_conn *c, struct hp_stats *ret);
/* In a child forked without exec, on its own new connection: have the
 * daemon register the parent's ranges in this process (HP_MSG_INHERIT). */
int hp_conn_inherit(struct hp_conn *c);

/*
 * Parse a size: decimal digits with an optional K, M or G suffix (binary,
 * either case). Returns 0 and *ret, or -EINVAL (syntax) / -ERANGE (overflow).
 */
int hp_parse_size(const char *s, uint64_t *ret);

/* Parse a threshold in [min, HP_REGION_PAGES]: 0 or -EINVAL / -ERANGE. */
int hp_parse_threshold(const char *s, unsigned min, unsigned *ret);

#endif
