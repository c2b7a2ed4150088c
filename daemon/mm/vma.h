/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vma.h: what a client's memory is, read from its /proc/PID/maps (vma.c).
 * Each backend says what its ranges must be with a vma_ok_fn.
 */
#ifndef HP_VMA_H
#define HP_VMA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "compat.h"

/* What each VMA of a range must be: 0, or -EFAULT with why set. */
typedef int (*vma_ok_fn)(const struct procmap_query *q, const char *name, char *why, size_t whylen);

/*
 * Check every VMA covering [start, end) with PROCMAP_QUERY: mapped without
 * holes, and ok() for each. -ENOTTY when the kernel has no PROCMAP_QUERY
 * (before 6.11); `kind` names what the memory must be, for messages.
 */
int vma_walk(int maps_fd, uint64_t start, uint64_t end, vma_ok_fn ok, const char *kind, char *why, size_t whylen);
/* The same with a check that gets `data` (e.g. the files a backend made). */
typedef int (*vma_check_fn)(const struct procmap_query *q, const char *name, void *data, char *why, size_t whylen);
int vma_walk_data(int maps_fd, uint64_t start, uint64_t end, vma_check_fn check, void *data, const char *kind,
                  char *why, size_t whylen);
/* The VMA containing addr: 0 with [*lo, *hi), or -errno (-ENOENT: unmapped). */
int vma_bounds(int maps_fd, uint64_t addr, uint64_t *lo, uint64_t *hi);
/* 1 if the VMA containing addr lies inside [lo, hi), 0 if not, -errno (-ENOENT: unmapped). */
int vma_within(int maps_fd, uint64_t addr, uint64_t lo, uint64_t hi);

#endif
