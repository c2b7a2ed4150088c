/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shim.h: what the two halves of the preload shim share: preload.c (the
 * connection, mmap/mremap) and malloc.c (the malloc family's large blocks).
 *
 * Owns: nothing; declarations only, all hidden inside libhugepaged-preload.so.
 */
#ifndef HP_SHIM_H
#define HP_SHIM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* Set once the handshake succeeded; cleared for good when the connection
 * dies or in a forked child. */
extern atomic_bool shim_managed;

/* Smallest mapping (and malloc block) managed; set before shim_managed. */
extern size_t shim_min_size;

/* This thread is inside the shim (or in a signal handler that interrupted
 * it): pass everything through. initial-exec: no allocation on first use. */
extern __thread bool shim_inside __attribute__((tls_model("initial-exec")));

static inline bool shim_is_managed(void)
{
        return atomic_load_explicit(&shim_managed, memory_order_acquire);
}

/*
 * A new private anonymous read-write mapping of len bytes (a multiple of the
 * page size) at an address aligned to align (a power of two, 2 MiB at
 * least), registered with the daemon if it still manages the process.
 * MAP_FAILED with errno set if it cannot be mapped.
 */
void *shim_map_block(size_t len, size_t align);

/*
 * Resize a mapping made by shim_map_block() (MREMAP_MAYMOVE; growing keeps
 * 2 MiB alignment and registers the new tail). MAP_FAILED with errno set; the
 * old mapping is then unchanged.
 */
void *shim_remap_block(void *old, size_t old_len, size_t new_len);

/*
 * remap.c: mremap() of [old, old+old_len) when the kernel refused it with
 * EFAULT because the range is several VMAs (split by the daemon): the same
 * move or resize, piece by piece, if the range is contiguous private
 * anonymous memory of one protection. flags: MREMAP_MAYMOVE, MREMAP_FIXED.
 * MAP_FAILED with errno set (EFAULT if the range does not qualify); the old
 * range is then unchanged.
 */
void *shim_remap_pieces(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);

struct hp_conn;

/*
 * fork.c: in a child forked without exec, open conn (storage of the caller's,
 * closed) to the daemon at path and have the parent's ranges registered in
 * this process. 0, or -errno with why set and conn closed. All of it ends
 * within HP_CONN_FORK_TIMEOUT_MS.
 */
int shim_fork_connect(struct hp_conn *conn, const char *path, char *why, size_t whylen);

/* malloc.c's part of fork: hold its lock across fork(), reset it after. */
void shim_malloc_atfork_prepare(void);
void shim_malloc_atfork_parent(void);
void shim_malloc_atfork_child(void);

#endif
