/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libhugepaged.c: libhugepaged.so.0, the public client API of hugepaged.h.
 *
 * Owns: struct hugepaged (one connection and the mutex that serialises its
 * requests), argument checks, and hugepaged_alloc()'s aligned mappings.
 *
 * Must never: print, set errno (except hugepaged_alloc(), as documented),
 * keep the uffd, or let its own mappings go through an interposed mmap().
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "hugepaged.h"
#include "raw.h"
#include "util.h"

#define _public_ __attribute__((visibility("default")))

struct hugepaged {
        pthread_mutex_t lock;
        struct hp_conn conn;
};

/* hugepaged_error(NULL): why this thread's last hugepaged_connect() failed,
 * since a failed connect returns no handle to ask. */
static __thread char connect_error[HP_ERROR_TEXT];

_public_ void hugepaged_close(struct hugepaged *h)
{
        if (!h)
                return;
        hp_conn_close(&h->conn);
        pthread_mutex_destroy(&h->lock);
        free(h);
}

static void hugepaged_closep(struct hugepaged **h)
{
        hugepaged_close(*h);
}

_public_ int hugepaged_connect(const char *socket_path, struct hugepaged **ret)
{
        _cleanup_(hugepaged_closep) struct hugepaged *h = NULL;
        int r;

        connect_error[0] = '\0';
        if (!ret)
                return -EINVAL;

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        hp_conn_init(&h->conn);
        r = pthread_mutex_init(&h->lock, NULL);
        if (r != 0) {
                free(h);
                h = NULL;
                return -r;
        }

        r = hp_conn_open(&h->conn, hp_conn_socket_path(socket_path));
        if (r < 0) {
                memcpy(connect_error, h->conn.error, sizeof(connect_error));
                return r;
        }

        *ret = h;
        h = NULL;
        return 0;
}

_public_ const char *hugepaged_error(struct hugepaged *h)
{
        if (!h)
                return connect_error;
        return h->conn.error;
}

static int range_check(void *addr, size_t length, unsigned threshold)
{
        if (hp_range_check((uint64_t)(uintptr_t)addr, length, threshold) < 0)
                return -EINVAL;
        return 0;
}

_public_ int hugepaged_register(struct hugepaged *h, void *addr, size_t length, unsigned threshold)
{
        int r;

        if (!h)
                return -EINVAL;
        r = range_check(addr, length, threshold);
        if (r < 0)
                return r;

        pthread_mutex_lock(&h->lock);
        r = hp_conn_register(&h->conn, (uintptr_t)addr, length, threshold);
        pthread_mutex_unlock(&h->lock);
        return r;
}

_public_ int hugepaged_unregister(struct hugepaged *h, void *addr, size_t length)
{
        int r;

        if (!h)
                return -EINVAL;
        r = range_check(addr, length, 0);
        if (r < 0)
                return r;

        pthread_mutex_lock(&h->lock);
        r = hp_conn_unregister(&h->conn, (uintptr_t)addr, length);
        pthread_mutex_unlock(&h->lock);
        return r;
}

_public_ int hugepaged_set_threshold(struct hugepaged *h, unsigned threshold)
{
        int r;

        if (!h || threshold < 1 || threshold > HP_REGION_PAGES)
                return -EINVAL;

        pthread_mutex_lock(&h->lock);
        r = hp_conn_set_policy(&h->conn, threshold, 0);
        pthread_mutex_unlock(&h->lock);
        return r;
}

_public_ int hugepaged_get_stats(struct hugepaged *h, struct hugepaged_stats *ret)
{
        struct hp_stats s;
        int r;

        if (!h || !ret)
                return -EINVAL;

        pthread_mutex_lock(&h->lock);
        r = hp_conn_get_stats(&h->conn, &s);
        pthread_mutex_unlock(&h->lock);
        if (r < 0)
                return r;

        *ret = (struct hugepaged_stats) {
                .faults_served = s.faults_served,
                .pages_populated = s.pages_populated,
                .regions_reserved = s.regions_reserved,
                .pages_reserved_unused = s.pages_reserved_unused,
                .promotions = s.promotions,
                .promotions_failed = s.promotions_failed,
                .regions_huge = s.regions_huge,
                .reservations_released = s.reservations_released,
                .ranges = s.ranges,
                .fault_latency_p50_ns = s.fault_latency_p50_ns,
                .fault_latency_p99_ns = s.fault_latency_p99_ns,
                .promotion_latency_p50_ns = s.promotion_latency_p50_ns,
                .promotion_latency_p99_ns = s.promotion_latency_p99_ns,
                .threshold = s.threshold,
        };
        return 0;
}

_public_ void *hugepaged_alloc(struct hugepaged *h, size_t length, int strict)
{
        size_t len;
        void *p;
        int r;

        if (length == 0) {
                errno = EINVAL;
                return NULL;
        }
        if (length > SIZE_MAX / 4) {
                errno = ENOMEM;
                return NULL;
        }
        len = hp_round_up(length, HP_REGION_SIZE);

        /* raw system calls: a preload shim in this process must not manage
         * (and register) this mapping a second time. */
        p = hp_mmap_aligned(len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        if (p == MAP_FAILED)
                return NULL;

        /* Before registering: the dense path needs VM_HUGEPAGE on the VMA. The
         * advice only fails where THP is not built in; the memory is still fine. */
        (void) raw_madvise(p, len, MADV_HUGEPAGE);

        r = h ? hugepaged_register(h, p, len, 0) : -ENOTCONN;
        if (r < 0 && strict) {
                raw_munmap(p, len);
                errno = -r;
                return NULL;
        }
        return p;
}

_public_ void *hugepaged_alloc_shared(struct hugepaged *h, size_t length, int *ret_fd)
{
        size_t len;
        int fd = -1, r;
        void *p;

        if (ret_fd)
                *ret_fd = -1;
        if (length == 0 || !h) {
                errno = length == 0 ? EINVAL : ENOTCONN;
                return NULL;
        }
        if (length > SIZE_MAX / 4) {
                errno = ENOMEM;
                return NULL;
        }
        len = hp_round_up(length, HP_REGION_SIZE);
        pthread_mutex_lock(&h->lock);
        r = hp_conn_shmem_create(&h->conn, len, &fd);
        pthread_mutex_unlock(&h->lock);
        if (r < 0) {
                errno = -r;
                return NULL;
        }
        p = hp_mmap_file_aligned(len, PROT_READ | PROT_WRITE, 0, fd);
        if (p == MAP_FAILED) {
                r = errno;
                close(fd);
                errno = r;
                return NULL;
        }
        pthread_mutex_lock(&h->lock);
        r = hp_conn_register_shmem(&h->conn, (uintptr_t)p, len, 0);
        pthread_mutex_unlock(&h->lock);
        if (r < 0) {
                raw_munmap(p, len);
                close(fd);
                errno = -r;
                return NULL;
        }
        if (ret_fd)
                *ret_fd = fd;
        else
                close(fd);
        return p;
}

_public_ int hugepaged_free(struct hugepaged *h, void *addr, size_t length)
{
        int saved_errno = errno, r = 0;

        if (!addr)
                return 0;
        if (((uintptr_t)addr & (HP_REGION_SIZE - 1)) || length == 0 || length > SIZE_MAX / 4)
                return -EINVAL;
        /* No UNREGISTER round trip: the daemon learns of the unmap from the
         * uffd's UNMAP event. */
        if (raw_munmap(addr, hp_round_up(length, HP_REGION_SIZE)) < 0)
                r = -errno;
        errno = saved_errno;
        return r;
}
