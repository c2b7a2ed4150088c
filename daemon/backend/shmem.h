/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem.h: the shmem backend's own interfaces, private to backend/: the
 * backend (shmem.c) and the file system its files live on (shmem-fs.c). The
 * rest of the daemon knows the backend only as `backend_shmem` (backend.h).
 */
#ifndef HP_SHMEM_H
#define HP_SHMEM_H

#include <stddef.h>
#include <stdint.h>

/*
 * Mount a tmpfs with huge=always, size= `size` bytes, mode 0700, at
 * dir/shmem, open its root and detach it at once (MNT_DETACH): the file
 * system lives as long as the returned fd or a file on it does, and nothing
 * is left mounted when the daemon exits or is killed. Needs CAP_SYS_ADMIN:
 * called before privileges are dropped. The fd (O_PATH), or -errno with why
 * set.
 */
int shmem_fs_open(const char *dir, uint64_t size, char *why, size_t whylen);

/* A new unlinked file of `size` bytes on it: the fd (O_RDWR, close-on-exec),
 * or -errno. */
int shmem_fs_create(int fs_fd, uint64_t size);

#endif
