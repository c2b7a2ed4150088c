/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem-fs.c: the shmem backend's file system: a tmpfs mounted huge=always,
 * so that its page cache holds 2 MiB folios whatever
 * /sys/kernel/mm/transparent_hugepage/shmem_enabled says (Debian's default
 * is never, under which MADV_COLLAPSE refuses ordinary shared memory).
 *
 * It is mounted in the runtime directory and detached at once: the file
 * system then lives exactly as long as something holds it (the daemon's fd
 * of its root, a file on it, a mapping of such a file), nobody else can
 * reach it by path, and a daemon that is killed leaves no mount behind.
 * Files are made with O_TMPFILE: unlinked from the start, they go when the
 * last fd and mapping go.
 *
 * Runs once at start, as root (mount needs CAP_SYS_ADMIN), before
 * privileges are dropped; shmem_fs_create runs on the main thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmem.h"
#include "util.h"

#define SHMEM_FS_INODES 65536   /* files at once, all clients together */

int shmem_fs_open(const char *dir, uint64_t size, char *why, size_t whylen)
{
        char path[512], opts[128];
        int fd, r;

        snprintf(path, sizeof(path), "%s/shmem", dir);
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
                r = -errno;
                snprintf(why, whylen, "cannot create %s: %m", path);
                return r;
        }
        snprintf(opts, sizeof(opts), "huge=always,size=%" PRIu64 ",nr_inodes=%d,mode=0700,uid=%u,gid=%u", size,
                 SHMEM_FS_INODES, (unsigned)getuid(), (unsigned)getgid());
        /* exec allowed: mprotect(PROT_EXEC) works on anonymous shared
         * memory, and must on its stand-in (the files are 0600, unlinked) */
        if (mount("hugepaged-shmem", path, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
                r = -errno;
                snprintf(why, whylen, "cannot mount a tmpfs (%s) at %s: %m", opts, path);
                (void)rmdir(path);
                return r;
        }
        fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        r = fd < 0 ? -errno : 0;
        /* Detached now, it lives on through fd and the files made on it. */
        if (umount2(path, MNT_DETACH) < 0 && r == 0)
                r = -errno;
        (void)rmdir(path);
        if (r < 0) {
                safe_close(fd);
                snprintf(why, whylen, "cannot open and detach the tmpfs at %s: %s", path, strerror(-r));
                return r;
        }
        return fd;
}

int shmem_fs_create(int fs_fd, uint64_t size)
{
        int fd = openat(fs_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t)size) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}
