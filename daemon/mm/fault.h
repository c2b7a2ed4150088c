/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault.h: a client's userfaultfd (fault.c): reading it, and the operations
 * on it that the backends share. A fault thread with the client's lock
 * held (fault-threads.h); the uffd operations also on the main thread, with
 * the client's lock held.
 */
#ifndef HP_FAULT_H
#define HP_FAULT_H

#include <stdbool.h>
#include <stdint.h>

struct client;

/* The uffd is readable: serve faults and events, a bounded batch. 0, or
 * -errno when the uffd cannot be read (the client is to be disconnected). */
int fault_uffd_ready(struct client *c);
/* Forget the range and region records of [start, end): the memory is gone. */
void fault_drop_span(struct client *c, uint64_t start, uint64_t end);
/* Serve one 4 KiB zero page at page_addr outside any region record, or
 * wake the thread if the copy fails. */
void fault_serve_page(struct client *c, uint64_t page_addr);
/* Record the latency of a fault read at t0 and served now. */
void fault_served(struct client *c, uint64_t t0);

/* Wake the threads waiting on [addr, addr + len): they fault again. */
void uffd_wake(struct client *c, uint64_t addr, uint64_t len);
/* UFFDIO_UNREGISTER: 0 or -errno (wakes every fault blocked there). */
int uffd_unregister(struct client *c, uint64_t start, uint64_t len);
/* UFFDIO_COPY of zeros to [dst, dst + len): 0 or -errno; *copied (if
 * given): bytes copied, also on a partial copy. wake=false: DONTWAKE. */
int uffd_copy_zero(struct client *c, uint64_t dst, uint64_t len, uint64_t *copied, bool wake);
/* UFFDIO_CONTINUE: map [dst, dst + len) to the pages already in the page
 * cache of a MINOR-registered file mapping, no copy: 0 or -errno (-EFAULT:
 * a page is not in the page cache). */
int uffd_continue(struct client *c, uint64_t dst, uint64_t len, bool wake);

#endif
