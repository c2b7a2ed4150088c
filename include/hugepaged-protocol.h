/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hugepaged-protocol.h: the wire protocol between hugepaged and its clients
 * (libhugepaged and the preload shim).
 *
 * Transport: AF_UNIX SOCK_SEQPACKET, one message per packet, host byte order
 * (both ends are on the same machine). Every message starts with a fixed
 * header; `length` is the whole packet including the header. Requests carry a
 * client-chosen `seq`; the reply echoes it. File descriptors travel as
 * SCM_RIGHTS on HP_MSG_HELLO_REPLY (the /dev/userfaultfd fd), HP_MSG_UFFD
 * (the client's new uffd) and the REPLY to HP_MSG_SHMEM_CREATE (the file).
 * Unknown types and bad lengths get HP_MSG_ERROR.
 *
 * Handshake:
 *   client: HELLO                 -> daemon checks SO_PEERCRED, opens a pidfd
 *   daemon: HELLO_REPLY + devfd   (or ERROR with a reason; then disconnect)
 *   client: ioctl(devfd, USERFAULTFD_IOC_NEW) -> uffd; UFFD + uffd; closes both
 *   daemon: REPLY                 (UFFDIO_API done; ranges may be registered)
 *
 * This header is pure data plus a pure decoder (hp_msg_check); it must never
 * grow I/O.
 */
#ifndef HUGEPAGED_PROTOCOL_H
#define HUGEPAGED_PROTOCOL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define HP_MAGIC   0x48504744u /* "HPGD" */
#define HP_VERSION 1u

#define HP_MSG_MAX 512u /* largest packet either side sends */

enum hp_msg_type {
        HP_MSG_HELLO = 1,       /* c->d: struct hp_hello */
        HP_MSG_HELLO_REPLY,     /* d->c: struct hp_hello_reply, fd: /dev/userfaultfd */
        HP_MSG_UFFD,            /* c->d: header only, fd: the new uffd */
        HP_MSG_REGISTER,        /* c->d: struct hp_range_req */
        HP_MSG_UNREGISTER,      /* c->d: struct hp_range_req */
        HP_MSG_SET_POLICY,      /* c->d: struct hp_policy */
        HP_MSG_GET_STATS,       /* c->d: header only */
        HP_MSG_STATS_REPLY,     /* d->c: struct hp_stats_reply */
        HP_MSG_REPLY,           /* d->c: header only, status in header */
        HP_MSG_ERROR,           /* d->c: struct hp_error */
        HP_MSG_SYNC,            /* c->d: struct hp_range_req; REPLY once no
                                 * promotion is in flight in the range (while
                                 * one is, the mapping is split into several
                                 * VMAs and a resizing mremap() fails EFAULT) */
        HP_MSG_HUGETLB_RESERVE, /* c->d: struct hp_hugetlb_req; REPLY once at least
                                 * `pages` free huge pages are in the pool (the
                                 * daemon grows it within its budget), else ERROR */
        HP_MSG_INHERIT,         /* c->d: header only; a child forked without exec:
                                 * register in its mm the anonymous ranges its
                                 * parent (a client of the same uid) has, where
                                 * the child still has private anonymous memory.
                                 * REPLY (status 0), or ERROR if the parent is
                                 * no client */
        HP_MSG_SHMEM_CREATE,    /* c->d: struct hp_shmem_req; REPLY + fd: a new
                                 * unlinked file of `length` bytes on the
                                 * daemon's huge tmpfs, to map MAP_SHARED and
                                 * register as HP_RANGE_SHMEM; else ERROR */
        _HP_MSG_MAX,
};

struct hp_header {
        uint32_t magic;
        uint16_t version;
        uint16_t type;          /* enum hp_msg_type */
        uint32_t length;        /* whole packet, header included */
        uint32_t seq;           /* echoed in the reply */
        int32_t status;         /* replies: 0 or -errno */
        uint32_t reserved;      /* must be 0 */
};

struct hp_hello {
        struct hp_header hdr;
        uint32_t flags;         /* must be 0 */
        uint32_t reserved;
};

struct hp_hello_reply {
        struct hp_header hdr;
        uint32_t version;       /* daemon's protocol version */
        uint32_t features;      /* HP_FEATURE_* */
        uint64_t reserved;
};

#define HP_RANGE_ANON    0u     /* private anonymous memory */
#define HP_RANGE_HUGETLB 1u     /* private anonymous MAP_HUGETLB memory, 2 MiB pages:
                                 * addr and length 2 MiB aligned, threshold 0 */
#define HP_RANGE_SHMEM   2u     /* a MAP_SHARED mapping of a file the daemon made
                                 * (HP_MSG_SHMEM_CREATE) for this client or a
                                 * client of its uid: addr 2 MiB aligned */
#define HP_RANGE_KINDS   3u     /* kinds of memory: HP_RANGE_* < HP_RANGE_KINDS */

struct hp_range_req {
        struct hp_header hdr;
        uint64_t addr;          /* page aligned */
        uint64_t length;        /* page aligned, > 0 */
        uint32_t backend;       /* HP_RANGE_* */
        uint32_t threshold;     /* 0 = client default, else 1..512 */
};

/*
 * Ask for `pages` free 2 MiB huge pages before a MAP_HUGETLB mmap. The
 * daemon charges them to the client until it registers a hugetlb range (or
 * sends pages = 0: its mmap failed) and grows vm.nr_hugepages if the pool
 * is short. Errors: -EDQUOT (the client's budget), -ENOSPC (the daemon's
 * budget), -ENOMEM (the kernel could not allocate the pages).
 */
struct hp_hugetlb_req {
        struct hp_header hdr;
        uint64_t pages;         /* 0..HP_HUGETLB_PAGES_MAX */
        uint32_t flags;         /* HP_HUGETLB_* */
        uint32_t reserved;      /* must be 0 */
};

/* For a shared mapping (MAP_SHARED|MAP_HUGETLB, SHM_HUGETLB): the kernel
 * reserves its pages at mmap, and the client keeps being charged for them
 * until it is gone. pages 0: the last such request's mmap failed. */
#define HP_HUGETLB_SHARED 1u
#define HP_HUGETLB_FLAGS_ALL HP_HUGETLB_SHARED

#define HP_HUGETLB_PAGES_MAX (1ull << 24)       /* 32 TiB of 2 MiB pages */

/*
 * Ask for a shared file of `length` bytes (HP_MSG_SHMEM_CREATE). The reply
 * carries its fd; its size is `length` rounded up to 2 MiB. The daemon
 * keeps its own fd while a client holds the file (it fills and releases its
 * 2 MiB reservations) and charges `length` to the client until it is gone.
 * Errors: -EDQUOT (the client's budget or its cgroup's room), -ENOSPC (the
 * daemon's tmpfs is full), -EOPNOTSUPP (the shmem backend is off).
 */
struct hp_shmem_req {
        struct hp_header hdr;
        uint64_t length;        /* 1..HP_SHMEM_LENGTH_MAX */
        uint32_t flags;         /* must be 0 */
        uint32_t reserved;      /* must be 0 */
};

#define HP_SHMEM_LENGTH_MAX (1ull << 45)        /* 32 TiB */

struct hp_policy {
        struct hp_header hdr;
        uint32_t threshold;     /* 1..512 pages of 4 KiB per 2 MiB region */
        uint32_t flags;         /* HP_POLICY_* */
};

#define HP_POLICY_NO_DENSE_PREDICT 0x1u
#define HP_POLICY_FLAGS_ALL        HP_POLICY_NO_DENSE_PREDICT

/* Counters, the names of DESIGN.md; all totals since the client connected. */
struct hp_stats {
        uint64_t faults_served;
        uint64_t pages_populated;
        uint64_t regions_reserved;      /* currently in the RESERVED state */
        uint64_t pages_reserved_unused; /* 4K pages reserved but not populated */
        uint64_t promotions;
        uint64_t promotions_failed;
        uint64_t regions_huge;          /* currently huge */
        uint64_t reservations_released;
        uint64_t ranges;
        uint64_t fault_latency_p50_ns;
        uint64_t fault_latency_p99_ns;
        uint64_t promotion_latency_p50_ns;
        uint64_t promotion_latency_p99_ns;
        uint64_t threshold;
};

struct hp_stats_reply {
        struct hp_header hdr;
        struct hp_stats stats;
};

#define HP_ERROR_TEXT 200

struct hp_error {
        struct hp_header hdr;
        char text[HP_ERROR_TEXT];       /* NUL terminated, for people */
};

#define HP_PAGE_SIZE     4096ull
#define HP_REGION_SIZE   (2ull << 20)
#define HP_REGION_PAGES  512u

static inline void hp_header_init(struct hp_header *h, enum hp_msg_type type,
                                  uint32_t length, uint32_t seq, int32_t status)
{
        h->magic = HP_MAGIC;
        h->version = HP_VERSION;
        h->type = (uint16_t)type;
        h->length = length;
        h->seq = seq;
        h->status = status;
        h->reserved = 0;
}

/* Expected packet size of each type; 0 for an unknown type. */
static inline size_t hp_msg_size(uint16_t type)
{
        switch (type) {
        case HP_MSG_HELLO:       return sizeof(struct hp_hello);
        case HP_MSG_HELLO_REPLY: return sizeof(struct hp_hello_reply);
        case HP_MSG_UFFD:        return sizeof(struct hp_header);
        case HP_MSG_REGISTER:    return sizeof(struct hp_range_req);
        case HP_MSG_UNREGISTER:  return sizeof(struct hp_range_req);
        case HP_MSG_SET_POLICY:  return sizeof(struct hp_policy);
        case HP_MSG_GET_STATS:   return sizeof(struct hp_header);
        case HP_MSG_STATS_REPLY: return sizeof(struct hp_stats_reply);
        case HP_MSG_REPLY:       return sizeof(struct hp_header);
        case HP_MSG_ERROR:       return sizeof(struct hp_error);
        case HP_MSG_SYNC:        return sizeof(struct hp_range_req);
        case HP_MSG_HUGETLB_RESERVE: return sizeof(struct hp_hugetlb_req);
        case HP_MSG_INHERIT:     return sizeof(struct hp_header);
        case HP_MSG_SHMEM_CREATE: return sizeof(struct hp_shmem_req);
        default:                 return 0;
        }
}

/*
 * Check a received packet of `len` bytes. Returns the message type (> 0) or:
 *  -EBADMSG   shorter than a header, bad magic, reserved bits set,
 *             header length not equal to the packet length
 *  -EPROTONOSUPPORT  wrong version
 *  -EOPNOTSUPP unknown type
 *  -EMSGSIZE  packet size does not match the type
 * The caller still validates field values (see hp_range_check).
 */
static inline int hp_msg_check(const void *buf, size_t len)
{
        const struct hp_header *h = (const struct hp_header *)buf;
        size_t want;

        if (!buf || len < sizeof(*h))
                return -EBADMSG;
        if (h->magic != HP_MAGIC || h->reserved != 0 || h->length != len)
                return -EBADMSG;
        if (h->version != HP_VERSION)
                return -EPROTONOSUPPORT;
        want = hp_msg_size(h->type);
        if (want == 0)
                return -EOPNOTSUPP;
        if (len != want)
                return -EMSGSIZE;
        return h->type;
}

/* Highest user address on x86-64 with 4-level paging plus 5-level headroom. */
#define HP_USER_ADDR_MAX (1ull << 56)

/* Validate the address fields of a range request: 0 or -EINVAL/-ERANGE. */
static inline int hp_range_check(uint64_t addr, uint64_t length, uint32_t threshold)
{
        if (length == 0 || (addr & (HP_PAGE_SIZE - 1)) || (length & (HP_PAGE_SIZE - 1)))
                return -EINVAL;
        if (addr == 0 || addr + length < addr || addr + length > HP_USER_ADDR_MAX)
                return -ERANGE;
        if (threshold > HP_REGION_PAGES)
                return -ERANGE;
        return 0;
}

/* The fields of a hugetlb pool request: 0, -EINVAL (flags or reserved set)
 * or -ERANGE (more than HP_HUGETLB_PAGES_MAX pages). */
static inline int hp_hugetlb_req_check(uint64_t pages, uint32_t flags, uint32_t reserved)
{
        if ((flags & ~HP_HUGETLB_FLAGS_ALL) || reserved != 0)
                return -EINVAL;
        if (pages > HP_HUGETLB_PAGES_MAX)
                return -ERANGE;
        return 0;
}

/* A hugetlb range must cover whole 2 MiB pages: 0 or -EINVAL. */
static inline int hp_hugetlb_range_check(uint64_t addr, uint64_t length, uint32_t threshold)
{
        if ((addr & (HP_REGION_SIZE - 1)) || (length & (HP_REGION_SIZE - 1)) || threshold != 0)
                return -EINVAL;
        return 0;
}

/* The fields of a shared file request: 0, -EINVAL (flags or reserved set)
 * or -ERANGE (length 0 or above HP_SHMEM_LENGTH_MAX). */
static inline int hp_shmem_req_check(uint64_t length, uint32_t flags, uint32_t reserved)
{
        if (flags != 0 || reserved != 0)
                return -EINVAL;
        if (length == 0 || length > HP_SHMEM_LENGTH_MAX)
                return -ERANGE;
        return 0;
}

/* What each kind of range asks of addr, length and threshold beyond
 * hp_range_check: 0, -EOPNOTSUPP (no such kind) or -EINVAL. */
static inline int hp_range_kind_check(uint32_t kind, uint64_t addr, uint64_t length, uint32_t threshold)
{
        switch (kind) {
        case HP_RANGE_ANON:
                return 0;
        case HP_RANGE_HUGETLB:
                return hp_hugetlb_range_check(addr, length, threshold);
        case HP_RANGE_SHMEM:
                /* its 2 MiB regions are the file's: the mapping starts on one */
                return (addr & (HP_REGION_SIZE - 1)) ? -EINVAL : 0;
        default:
                return -EOPNOTSUPP;
        }
}

#endif
