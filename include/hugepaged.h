/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hugepaged.h: client library for hugepaged (libhugepaged.so.0).
 *
 * A program hands anonymous memory to the hugepaged daemon, which serves the
 * first-touch faults of that memory at 4 KiB from 2 MiB reservations and turns
 * a 2 MiB region into a transparent huge page once enough of it is in use.
 *
 * Every function returns 0 (or a non-negative value) on success and a negative
 * errno value on failure; none of them prints anything or sets errno, except
 * hugepaged_alloc(), which returns NULL and sets errno like mmap(2). The
 * library never keeps a copy of the userfaultfd: if the daemon goes away, the
 * memory keeps working with ordinary kernel page faults.
 *
 * A struct hugepaged may be used from several threads; calls are serialised.
 * After fork() the child must not use the parent's handle (its memory is not
 * managed); hugepaged_close() it and connect again if wanted.
 */
#ifndef HUGEPAGED_H
#define HUGEPAGED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HUGEPAGED_DEFAULT_SOCKET "/run/hugepaged/hugepaged.sock"

struct hugepaged;

/* Counters of this client, as the daemon keeps them (names as in hugepagectl). */
struct hugepaged_stats {
        uint64_t faults_served;
        uint64_t pages_populated;
        uint64_t regions_reserved;
        uint64_t pages_reserved_unused;
        uint64_t promotions;
        uint64_t promotions_failed;
        uint64_t regions_huge;
        uint64_t reservations_released;
        uint64_t ranges;
        uint64_t fault_latency_p50_ns;
        uint64_t fault_latency_p99_ns;
        uint64_t promotion_latency_p50_ns;
        uint64_t promotion_latency_p99_ns;
        uint64_t threshold;
};

/*
 * Connect to the daemon and complete the handshake. socket_path NULL means
 * $HUGEPAGED_SOCKET, else HUGEPAGED_DEFAULT_SOCKET. Errors: -ENOENT or
 * -ECONNREFUSED (no daemon), -EACCES (refused by the daemon's access rules;
 * hugepaged_error() has its reason), -EPROTO (protocol mismatch), -ENOMEM.
 */
int hugepaged_connect(const char *socket_path, struct hugepaged **ret);

/* Close the connection; managed ranges return to ordinary kernel faults. NULL is fine. */
void hugepaged_close(struct hugepaged *h);

/*
 * The daemon's last error text for this handle, or "" (never NULL). With
 * h == NULL: why the calling thread's last hugepaged_connect() failed.
 */
const char *hugepaged_error(struct hugepaged *h);

/*
 * Hand [addr, addr+length) to the daemon. The range must be page aligned and
 * consist of private anonymous mappings; 2 MiB-aligned regions inside it can
 * become huge pages, partial regions at the ends stay at 4 KiB. Call
 * madvise(MADV_HUGEPAGE) on it for the fastest dense path. threshold: pages
 * (1..512) of a 2 MiB region in use before it is promoted; 0 = the client's
 * default. Registering addresses that overlap an earlier registration
 * replaces it (memory mapped there now is new memory). Errors: -EINVAL
 * (alignment), -EFAULT (not mapped or not private anonymous), -ENOSPC (limit
 * reached), -ENOTCONN (daemon gone).
 */
int hugepaged_register(struct hugepaged *h, void *addr, size_t length, unsigned threshold);

/* Stop managing [addr, addr+length). Data already there stays. */
int hugepaged_unregister(struct hugepaged *h, void *addr, size_t length);

/* Default promotion threshold (1..512) for this client's ranges, new and existing. */
int hugepaged_set_threshold(struct hugepaged *h, unsigned threshold);

/* Read this client's counters. */
int hugepaged_get_stats(struct hugepaged *h, struct hugepaged_stats *ret);

/*
 * Map length bytes (rounded up to 2 MiB) of 2 MiB-aligned anonymous memory,
 * advise MADV_HUGEPAGE and register it. Returns NULL on failure with errno
 * set; if only the registration fails the memory is still returned
 * (unmanaged) unless strict is non-zero.
 */
void *hugepaged_alloc(struct hugepaged *h, size_t length, int strict);

/* Unmap memory from hugepaged_alloc() or hugepaged_alloc_shared() (length
 * as passed to it). */
int hugepaged_free(struct hugepaged *h, void *addr, size_t length);

/*
 * Shared memory that other processes can map too (a VMM's guest RAM, say):
 * a file of length bytes (rounded up to 2 MiB) on the daemon's huge tmpfs,
 * mapped MAP_SHARED read-write at a 2 MiB-aligned address and registered.
 * It reads zero; a 2 MiB region gets a huge page reserved at its first
 * fault, its touched 4 KiB pages are mapped from it without a copy, and it
 * is mapped whole, in place, once it holds the threshold. If ret_fd is not
 * NULL it gets the file's fd (close-on-exec, the caller's to close): a
 * process that maps it shares the memory (hugepaged does not serve its
 * faults; the kernel does, from the same pages). The memory goes when the
 * last mapping and fd go. Returns NULL with errno set: ENOTCONN (no
 * daemon), EOPNOTSUPP (the daemon's shmem backend is off), EDQUOT or ENOSPC
 * (a budget: hugepaged_error() says which), or mmap(2)'s errors.
 */
void *hugepaged_alloc_shared(struct hugepaged *h, size_t length, int *ret_fd);

#ifdef __cplusplus
}
#endif
#endif
