/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * compat.h: kernel uapi constants and syscall wrappers newer than Debian 12's
 * headers (glibc 2.36, linux-libc-dev 6.1). Only definitions, no logic.
 */
#ifndef HP_COMPAT_H
#define HP_COMPAT_H

#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

#ifndef PROCMAP_QUERY
/* linux/fs.h, kernel 6.11: O(log n) VMA lookup on a /proc/PID/maps fd. */
enum procmap_query_flags {
        PROCMAP_QUERY_VMA_READABLE = 0x01,
        PROCMAP_QUERY_VMA_WRITABLE = 0x02,
        PROCMAP_QUERY_VMA_EXECUTABLE = 0x04,
        PROCMAP_QUERY_VMA_SHARED = 0x08,
        PROCMAP_QUERY_COVERING_OR_NEXT_VMA = 0x10,
        PROCMAP_QUERY_FILE_BACKED_VMA = 0x20,
};
struct procmap_query {
        uint64_t size;
        uint64_t query_flags;
        uint64_t query_addr;
        uint64_t vma_start;
        uint64_t vma_end;
        uint64_t vma_flags;
        uint64_t vma_page_size;
        uint64_t vma_offset;
        uint64_t inode;
        uint32_t dev_major;
        uint32_t dev_minor;
        uint32_t vma_name_size;
        uint32_t build_id_size;
        uint64_t vma_name_addr;
        uint64_t build_id_addr;
};
#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
#endif

static inline int hp_pidfd_open(pid_t pid, unsigned int flags)
{
        return (int)syscall(SYS_pidfd_open, pid, flags);
}

static inline ssize_t hp_process_madvise(int pidfd, const struct iovec *iov, size_t n,
                                         int advice, unsigned int flags)
{
        return syscall(SYS_process_madvise, pidfd, iov, n, advice, flags);
}

#endif
