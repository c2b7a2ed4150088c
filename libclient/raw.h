/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * raw.h: the memory system calls issued directly, and 2 MiB-aligned mapping.
 *
 * Owns: nothing; header-only helpers for libhugepaged and the preload shim.
 *
 * Must never: go through the libc wrappers mmap/munmap/mremap/madvise (the
 * shim interposes them; libhugepaged must not be managed twice by a shim
 * loaded in the same process), or allocate.
 *
 * Like the libc wrappers, each returns -1 / MAP_FAILED with errno set.
 */
#ifndef HP_RAW_H
#define HP_RAW_H

#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hugepaged-protocol.h"

#if !defined(SYS_mmap) || UINTPTR_MAX != UINT64_MAX
#error "hugepaged clients need a 64-bit architecture with the mmap system call"
#endif

static inline void *raw_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
        return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

static inline int raw_munmap(void *addr, size_t len)
{
        return (int)syscall(SYS_munmap, addr, len);
}

static inline void *raw_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
        return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
}

static inline int raw_madvise(void *addr, size_t len, int advice)
{
        return (int)syscall(SYS_madvise, addr, len, advice);
}

static inline size_t hp_round_up(size_t v, size_t align)
{
        return (v + align - 1) & ~(align - 1);
}

/*
 * Map len bytes (page aligned, at most SIZE_MAX/2) private anonymous memory
 * at an address aligned to align (a power of two, 2 MiB for hp_mmap_aligned):
 * map len + align, then unmap the head and the tail. flags must not contain MAP_FIXED. On failure nothing stays mapped
 * (unless even the clean-up munmap fails, which only leaks address space).
 */
static inline void *hp_mmap_aligned_to(size_t len, size_t align, int prot, int flags)
{
        size_t over = len + align, head, tail;
        uintptr_t raw, aligned;
        void *p;

        p = raw_mmap(NULL, over, prot, flags, -1, 0);
        if (p == MAP_FAILED)
                return MAP_FAILED;
        raw = (uintptr_t)p;
        aligned = (raw + align - 1) & ~(uintptr_t)(align - 1);
        head = aligned - raw;
        tail = over - head - len;

        /* Trimming splits a VMA and can fail at vm.max_map_count. Then unmap
         * what is still ours, and only that: another thread may already have
         * mapped something where the head was. */
        if (head > 0 && raw_munmap(p, head) < 0) {
                int e = errno;
                raw_munmap(p, over);
                errno = e;
                return MAP_FAILED;
        }
        if (tail > 0 && raw_munmap((void *)(aligned + len), tail) < 0) {
                int e = errno;
                raw_munmap((void *)aligned, over - head);
                errno = e;
                return MAP_FAILED;
        }
        return (void *)aligned;
}

static inline void *hp_mmap_aligned(size_t len, int prot, int flags)
{
        return hp_mmap_aligned_to(len, HP_REGION_SIZE, prot, flags);
}

/*
 * Map len bytes (page aligned) of the file fd MAP_SHARED from offset 0 at a
 * 2 MiB-aligned address: reserve the place, then map the file over it.
 * MAP_FAILED with errno set, and nothing left mapped.
 */
static inline void *hp_mmap_file_aligned(size_t len, int prot, int flags, int fd)
{
        void *res = hp_mmap_aligned(len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
        void *p;

        if (res == MAP_FAILED)
                return MAP_FAILED;
        p = raw_mmap(res, len, prot, flags | MAP_SHARED | MAP_FIXED, fd, 0);
        if (p == MAP_FAILED) {
                int e = errno;
                raw_munmap(res, len);
                errno = e;
        }
        return p;
}

#endif
