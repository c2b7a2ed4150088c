/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * preload.c: libhugepaged-preload.so, the LD_PRELOAD shim that hands the large
 * private anonymous mappings of an unmodified program to hugepaged.
 *
 * Owns: the process's one connection to the daemon (made in the constructor),
 * the interposed mmap/mmap64/munmap/mremap, 2 MiB alignment of the mappings
 * it manages, the mapping of malloc.c's blocks (shim.h), and the hugetlb
 * backend: the pool request before a MAP_HUGETLB mmap and its registration,
 * and before a shared one (MAP_SHARED|MAP_HUGETLB, shmget SHM_HUGETLB), and
 * the shmem backend: anonymous shared memory made a mapping of a file of
 * the daemon's.
 *
 * Must never: change what a call returns or how it fails unless it can keep
 * the promise (any doubt: behave exactly like libc's wrapper), allocate or
 * call anything that may mmap inside an interposed call, recurse into itself,
 * print anything except, with HUGEPAGED_DEBUG, one line at start (and one in
 * a forked child), one if the connection is lost later and one per hugetlb
 * or shared file request refused, send a
 * request from a forked child on the parent's connection (it would register
 * in the parent's mm), or cost a system call per mmap once it is unmanaged.
 */
/* With _FILE_OFFSET_BITS=64 (meson's default) glibc's headers rename mmap to
 * mmap64 in asm, and the two definitions below would collide. On 64-bit
 * targets off_t is 64 bits either way. */
#undef _FILE_OFFSET_BITS

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "conn.h"
#include "raw.h"
#include "shim.h"
#include "util.h"

#define _public_ __attribute__((visibility("default")))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

/* Flags that make a private anonymous mapping someone else's business: fixed
 * placement, stacks, hugetlb, and memory populated before we could register. */
#define SHIM_MAP_EXCLUDED (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_STACK | MAP_GROWSDOWN | \
                           MAP_HUGETLB | MAP_POPULATE | MAP_LOCKED)

/* Read without the lock on every call (see shim.h). */
atomic_bool shim_managed;
size_t shim_min_size = HP_DEFAULT_MIN_SIZE;
__thread bool shim_inside __attribute__((tls_model("initial-exec")));

static struct hp_conn shim_conn = HP_CONN_NULL;     /* under shim_lock */
static pthread_mutex_t shim_lock = PTHREAD_MUTEX_INITIALIZER;
static bool shim_was_managed;                       /* once managed: ranges may be split */
static unsigned shim_threshold;                     /* 0: the daemon's default */
static bool shim_debug_on;                          /* HUGEPAGED_DEBUG */
static bool shim_backend_hugetlb;                   /* HUGEPAGED_BACKEND=hugetlb */
static char shim_socket_path[128];                  /* where a forked child connects */

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#define SHIM_MAP_HUGE_SIZE (0x3fu << MAP_HUGE_SHIFT)
#define SHIM_MAP_HUGE_2MB  (21u << MAP_HUGE_SHIFT)

static void shim_unmanage(void)
{
        atomic_store_explicit(&shim_managed, false, memory_order_release);
}

_printf_(1, 2) static void shim_debug(const char *fmt, ...);

/* The daemon went away (or broke the protocol): the process goes on
 * unmanaged; its managed memory already gets ordinary page faults. Under
 * shim_lock. */
static void shim_connection_lost(void)
{
        shim_unmanage();
        if (shim_debug_on)
                shim_debug("no longer managed: %s; memory falls back to ordinary page faults",
                           shim_conn.error[0] ? shim_conn.error : "the connection to the daemon was lost");
}

static bool shim_wants_mmap(size_t len, int flags, int fd, off_t off)
{
        return fd == -1 && off == 0 &&
               (flags & MAP_TYPE) == MAP_PRIVATE &&
               (flags & MAP_ANONYMOUS) &&
               !(flags & SHIM_MAP_EXCLUDED) &&
               len >= shim_min_size &&
               len <= SIZE_MAX / 4;
}

/* Register [addr, addr+len) and advise huge pages if the daemon took it. */
static int shim_register(void *addr, size_t len)
{
        int r = -ENOTCONN;

        /* Unmanaged (no daemon, or a forked child still being connected
         * or refused): no lock, no system call. */
        if (!shim_is_managed())
                return r;
        pthread_mutex_lock(&shim_lock);
        if (shim_is_managed()) {
                r = hp_conn_register(&shim_conn, (uintptr_t)addr, len, shim_threshold);
                if (!hp_conn_is_open(&shim_conn))
                        shim_connection_lost();
        }
        pthread_mutex_unlock(&shim_lock);

        /* Only managed memory gets the advice: unmanaged memory must behave
         * exactly as without the shim. */
        if (r == 0)
                (void) raw_madvise(addr, len, MADV_HUGEPAGE);
        return r;
}

/*
 * The hugetlb backend. Before a MAP_HUGETLB mmap, ask the daemon for the
 * pages (it grows the pool within its budget); after it, register the range
 * so the daemon serves its faults. Returns 0 or -errno; under shim_lock.
 */
static int shim_hugetlb_call(bool reserve, void *addr, size_t len, uint64_t pages, uint32_t flags)
{
        int r = -ENOTCONN;

        if (!shim_is_managed())
                return r;
        pthread_mutex_lock(&shim_lock);
        if (shim_is_managed()) {
                r = reserve ? hp_conn_hugetlb_reserve(&shim_conn, pages, flags)
                            : hp_conn_register_hugetlb(&shim_conn, (uintptr_t)addr, len);
                if (r < 0 && hp_conn_is_open(&shim_conn) && shim_debug_on && pages)
                        shim_debug("hugetlb: %s %zu bytes: %s", reserve ? "pool for" : "register",
                                   (size_t)(pages * HP_REGION_SIZE), shim_conn.error[0] ? shim_conn.error : strerror(-r));
                if (!hp_conn_is_open(&shim_conn))
                        shim_connection_lost();
        }
        pthread_mutex_unlock(&shim_lock);
        return r;
}

/* A private anonymous MAP_HUGETLB mapping of 2 MiB pages: the program's own,
 * or (want_hugetlb) one the policy makes hugetlb. With hugetlb_only, return
 * MAP_FAILED (errno untouched) when the pages cannot be had, so the caller
 * maps ordinary memory instead. */
static void *shim_mmap_hugetlb(void *addr, size_t len, int prot, int flags, bool hugetlb_only)
{
        int saved_errno = errno;
        size_t hlen = hp_round_up(len, HP_REGION_SIZE);
        uint64_t pages = hlen / HP_REGION_SIZE;
        int r = shim_hugetlb_call(true, NULL, 0, pages, 0);
        void *p;

        if (r < 0 && hugetlb_only)
                return MAP_FAILED;
        /* Refused or not: the kernel decides, as it would without the daemon. */
        p = raw_mmap(addr, len, prot, flags | MAP_HUGETLB, -1, 0);
        if (p == MAP_FAILED) {
                int e = errno;
                if (r == 0)
                        (void) shim_hugetlb_call(true, NULL, 0, 0, 0);
                if (hugetlb_only)
                        e = saved_errno;
                errno = e;
                return MAP_FAILED;
        }
        /* Populated or locked by the mmap itself: nothing left to serve. */
        if (!(flags & (MAP_POPULATE | MAP_LOCKED)))
                (void) shim_hugetlb_call(false, p, hlen, pages, 0);
        errno = saved_errno;
        return p;
}

/*
 * Shared hugetlb memory (MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB, a SysV
 * SHM_HUGETLB segment): the kernel reserves its pages when it is made, and
 * fails with ENOMEM when the pool has too few. Ask the daemon for them first
 * (it grows the pool within its budget and keeps the client charged while
 * it lives); then the kernel decides, as it would without the daemon.
 * Nothing to register: the kernel serves the faults from the reservation.
 */
static int shim_hugetlb_shared_ask(size_t len)
{
        uint64_t pages = hp_round_up(len, HP_REGION_SIZE) / HP_REGION_SIZE;
        return shim_hugetlb_call(true, NULL, 0, pages, HP_HUGETLB_SHARED);
}

static void shim_hugetlb_shared_failed(void)
{
        (void) shim_hugetlb_call(true, NULL, 0, 0, HP_HUGETLB_SHARED);
}

static bool shim_wants_shared_hugetlb_mmap(size_t len, int flags, int fd, off_t off)
{
        int huge = flags & (int)SHIM_MAP_HUGE_SIZE;

        return fd == -1 && off == 0 && (flags & MAP_TYPE) == MAP_SHARED && (flags & MAP_ANONYMOUS) &&
               (flags & MAP_HUGETLB) && (huge == 0 || huge == (int)SHIM_MAP_HUGE_2MB) &&
               !(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) && len > 0 && len <= SIZE_MAX / 4;
}

static void *shim_mmap_hugetlb_shared(void *addr, size_t len, int prot, int flags)
{
        int saved_errno = errno;
        int r = shim_hugetlb_shared_ask(len);
        void *p = raw_mmap(addr, len, prot, flags, -1, 0);

        if (p == MAP_FAILED) {
                int e = errno;
                if (r == 0)
                        shim_hugetlb_shared_failed();
                errno = e;
                return p;
        }
        errno = saved_errno;
        return p;
}

/*
 * The shmem backend: a program's anonymous shared memory
 * (MAP_SHARED|MAP_ANONYMOUS, no MAP_HUGETLB, the kernel's choice of place)
 * becomes a 2 MiB-aligned mapping of a file the daemon made on its huge
 * tmpfs, registered so that the daemon reserves a huge page per region and
 * maps it in place once dense. The same memory to the program: zero-filled,
 * shared with forked children, gone with the last mapping (our fd is closed
 * at once). Anything refused or failed: MAP_FAILED with errno untouched,
 * and the caller maps what the program asked for.
 */
static bool shim_wants_shared_mmap(void *addr, size_t len, int flags, int fd, off_t off)
{
        return !addr && fd == -1 && off == 0 && (flags & MAP_TYPE) == MAP_SHARED && (flags & MAP_ANONYMOUS) &&
               !(flags & SHIM_MAP_EXCLUDED) && len >= shim_min_size && len <= SIZE_MAX / 4;
}

static void *shim_mmap_shared(size_t len, int prot, int flags)
{
        int saved_errno = errno, fd = -1, r = -ENOTCONN;
        size_t plen = hp_round_up(len, HP_PAGE_SIZE);
        void *p = MAP_FAILED;

        pthread_mutex_lock(&shim_lock);
        if (shim_is_managed()) {
                r = hp_conn_shmem_create(&shim_conn, plen, &fd);
                if (r < 0 && hp_conn_is_open(&shim_conn) && shim_debug_on)
                        shim_debug("shared memory of %zu bytes stays ordinary: %s", plen,
                                   shim_conn.error[0] ? shim_conn.error : strerror(-r));
                if (!hp_conn_is_open(&shim_conn))
                        shim_connection_lost();
        }
        pthread_mutex_unlock(&shim_lock);
        if (r < 0)
                goto out;

        /* MAP_ANONYMOUS off, the rest (MAP_NORESERVE, ...) as asked */
        p = hp_mmap_file_aligned(plen, prot, flags & ~(MAP_TYPE | MAP_ANONYMOUS), fd);
        close(fd);
        if (p == MAP_FAILED)
                goto out;
        r = -ENOTCONN;
        pthread_mutex_lock(&shim_lock);
        if (shim_is_managed()) {
                r = hp_conn_register_shmem(&shim_conn, (uintptr_t)p, plen, shim_threshold);
                if (!hp_conn_is_open(&shim_conn))
                        shim_connection_lost();
        }
        pthread_mutex_unlock(&shim_lock);
        if (r < 0) {
                raw_munmap(p, plen);
                p = MAP_FAILED;
        }
out:
        errno = saved_errno;
        return p;
}

_public_ int shmget(key_t key, size_t size, int shmflg)
{
        /* SHM_HUGE_* encode the page size as MAP_HUGE_* do (HUGETLB_FLAG_ENCODE) */
        int huge = (shmflg >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
        bool ask = shim_is_managed() && !shim_inside && (shmflg & SHM_HUGETLB) && (shmflg & IPC_CREAT) && size > 0 &&
                   size <= SIZE_MAX / 4 && (huge == 0 || huge == 21);
        int saved_errno = errno;

        /* an existing segment takes no new pages: ask only for a new one */
        if (ask && key != IPC_PRIVATE && syscall(SYS_shmget, key, 0, 0) >= 0)
                ask = false;
        errno = saved_errno;
        int r = ask ? shim_hugetlb_shared_ask(size) : -1;

        errno = saved_errno;
        long id = syscall(SYS_shmget, key, size, shmflg);
        if (id < 0 && r == 0) {
                int e = errno;
                shim_hugetlb_shared_failed();
                errno = e;
        }
        return (int)id;
}

static bool shim_wants_hugetlb_mmap(size_t len, int flags, int fd, off_t off)
{
        int huge = flags & (int)SHIM_MAP_HUGE_SIZE;

        return fd == -1 && off == 0 && (flags & MAP_TYPE) == MAP_PRIVATE && (flags & MAP_ANONYMOUS) &&
               (flags & MAP_HUGETLB) && (huge == 0 || huge == (int)SHIM_MAP_HUGE_2MB) &&
               !(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_STACK | MAP_GROWSDOWN)) &&
               len > 0 && len <= SIZE_MAX / 4;
}

/* Wait until the daemon has no promotion in flight in [addr, addr+len). */
static int shim_sync(void *addr, size_t len)
{
        int r = -ENOTCONN;

        if (!shim_is_managed())
                return r;
        pthread_mutex_lock(&shim_lock);
        if (shim_is_managed()) {
                r = hp_conn_sync(&shim_conn, (uintptr_t)addr, len);
                if (!hp_conn_is_open(&shim_conn))
                        shim_connection_lost();
        }
        pthread_mutex_unlock(&shim_lock);
        return r;
}

static void *shim_mmap(void *addr, size_t len, int prot, int flags)
{
        int saved_errno = errno;
        size_t plen = hp_round_up(len, HP_PAGE_SIZE);
        void *p;

        if (addr) {
                /* A hint is the caller's choice of place: keep it, and manage
                 * whatever we got (only its whole 2 MiB regions get huge). */
                p = raw_mmap(addr, len, prot, flags, -1, 0);
                if (p == MAP_FAILED)
                        return p;
        } else {
                p = hp_mmap_aligned(plen, prot, flags);
                if (p == MAP_FAILED) {
                        /* e.g. the extra 2 MiB hit an overcommit or address
                         * space limit: let the real call decide */
                        errno = saved_errno;
                        return raw_mmap(NULL, len, prot, flags, -1, 0);
                }
        }

        (void) shim_register(p, plen);
        errno = saved_errno;
        return p;
}

/*
 * One try of a mremap(): as asked, or when align, grown at a 2 MiB-aligned
 * address: in place if it is aligned already, else moved to an aligned
 * reservation (moving over it replaces it). MAP_FAILED with errno set.
 */
static void *shim_mremap_once(void *old, size_t old_len, size_t new_len, int flags, void *new_addr,
                              bool align)
{
        size_t new_plen = hp_round_up(new_len, HP_PAGE_SIZE);
        void *dest, *p;
        int e;

        if (!align)
                return raw_mremap(old, old_len, new_len, flags, new_addr);

        if (((uintptr_t)old & (HP_REGION_SIZE - 1)) == 0) {
                p = raw_mremap(old, old_len, new_len, flags & ~MREMAP_MAYMOVE, NULL);
                /* EFAULT: not one whole VMA; a move fails the same way */
                if (p != MAP_FAILED || errno == EFAULT)
                        return p;
        }

        dest = hp_mmap_aligned(new_plen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
        if (dest != MAP_FAILED) {
                p = raw_mremap(old, old_len, new_len, flags | MREMAP_FIXED, dest);
                if (p != MAP_FAILED)
                        return p;
                e = errno;
                raw_munmap(dest, new_plen);
                if (e == EFAULT) {
                        errno = e;
                        return MAP_FAILED;
                }
        }
        return raw_mremap(old, old_len, new_len, flags, NULL);
}

#define SHIM_MREMAP_TRIES 3

static void *shim_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr, bool align)
{
        size_t old_plen = hp_round_up(old_len, HP_PAGE_SIZE);
        size_t new_plen = hp_round_up(new_len, HP_PAGE_SIZE);
        /* a range SYNC and remap.c can take */
        bool span_ok = !((uintptr_t)old & (HP_PAGE_SIZE - 1)) && old_len <= SIZE_MAX / 4;
        int saved_errno = errno;
        void *p;

        /* Linux 6.17+ moves a range of several VMAs with MREMAP_FIXED, but
         * stops with EFAULT at the first one registered with a userfaultfd,
         * after moving those before it: the range ends up half moved. The
         * daemon's regions unregistered while it promotes them are such
         * VMAs: have it register them back first. */
        if ((flags & MREMAP_FIXED) && span_ok)
                (void) shim_sync(old, old_plen);

        for (unsigned i = 1;; i++) {
                p = shim_mremap_once(old, old_len, new_len, flags, new_addr, align);
                if (p != MAP_FAILED)
                        break;
                /* While the daemon promotes a region it unregisters it, which
                 * splits the mapping into several VMAs, and a resizing or
                 * moving mremap() cannot span VMAs: wait for that to end and
                 * try again. */
                if (errno != EFAULT || !span_ok)
                        return MAP_FAILED;
                /* Still several VMAs with nothing in flight, or no daemon any
                 * more (its userfaultfd may not be dropped yet): move them
                 * one by one (remap.c). */
                if (i == SHIM_MREMAP_TRIES || shim_sync(old, old_plen) < 0) {
                        p = shim_remap_pieces(old, old_len, new_len, flags, new_addr);
                        if (p == MAP_FAILED)
                                return MAP_FAILED;
                        break;
                }
        }

        /* The kernel grew or moved the VMA with its userfaultfd registration
         * and told the daemon about the old part (REMAP event), but not about
         * the new tail: register the tail. If the old part was not managed,
         * it stays so; its first touches are mostly done anyway. */
        if (new_plen > old_plen && new_len >= shim_min_size)
                (void) shim_register((char *)p + old_plen, new_plen - old_plen);
        errno = saved_errno;
        return p;
}

/* Like hp_mmap_aligned(), for any power-of-two alignment of 2 MiB or more. */
static void *shim_map_aligned(size_t len, size_t align)
{
        const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;

        if (align <= HP_REGION_SIZE)
                return hp_mmap_aligned(len, prot, flags);
        if (len > SIZE_MAX / 4 || align > SIZE_MAX / 4) {
                errno = ENOMEM;
                return MAP_FAILED;
        }
        return hp_mmap_aligned_to(len, align, prot, flags);
}

void *shim_map_block(size_t len, size_t align)
{
        bool was_inside = shim_inside;
        int saved_errno = errno;
        void *p;

        shim_inside = true;
        p = shim_map_aligned(len, align);
        if (p != MAP_FAILED) {
                (void) shim_register(p, len);
                errno = saved_errno;
        }
        shim_inside = was_inside;
        return p;
}

void *shim_remap_block(void *old, size_t old_len, size_t new_len)
{
        bool was_inside = shim_inside;
        void *p;

        shim_inside = true;
        p = shim_mremap(old, old_len, new_len, MREMAP_MAYMOVE, NULL,
                        new_len > old_len && new_len >= shim_min_size);
        shim_inside = was_inside;
        return p;
}

_public_ void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
        void *p;

        if (!shim_is_managed() || shim_inside)
                return raw_mmap(addr, len, prot, flags, fd, off);
        if (shim_wants_hugetlb_mmap(len, flags, fd, off)) {
                shim_inside = true;
                p = shim_mmap_hugetlb(addr, len, prot, flags, false);
                shim_inside = false;
                return p;
        }
        if (shim_wants_shared_hugetlb_mmap(len, flags, fd, off)) {
                shim_inside = true;
                p = shim_mmap_hugetlb_shared(addr, len, prot, flags);
                shim_inside = false;
                return p;
        }
        if (shim_wants_shared_mmap(addr, len, flags, fd, off)) {
                shim_inside = true;
                p = shim_mmap_shared(len, prot, flags);
                shim_inside = false;
                return p != MAP_FAILED ? p : raw_mmap(addr, len, prot, flags, fd, off);
        }
        if (!shim_wants_mmap(len, flags, fd, off))
                return raw_mmap(addr, len, prot, flags, fd, off);

        shim_inside = true;
        p = MAP_FAILED;
        /* HUGEPAGED_BACKEND=hugetlb: whole 2 MiB pages become MAP_HUGETLB
         * when the daemon can supply them, else ordinary managed memory. */
        if (shim_backend_hugetlb && (len & (HP_REGION_SIZE - 1)) == 0)
                p = shim_mmap_hugetlb(addr, len, prot, flags, true);
        if (p == MAP_FAILED)
                p = shim_mmap(addr, len, prot, flags);
        shim_inside = false;
        return p;
}

_public_ void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
        return mmap(addr, len, prot, flags, fd, off);
}

/* The daemon learns of unmaps from the uffd's UNMAP events. */
_public_ int munmap(void *addr, size_t len)
{
        return raw_munmap(addr, len);
}

_public_ void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
        void *new_addr = NULL, *p;
        bool align;

        if (flags & MREMAP_FIXED) {
                va_list ap;
                va_start(ap, flags);
                new_addr = va_arg(ap, void *);
                va_end(ap);
        }

        /* old_len 0 duplicates a shared mapping; DONTUNMAP leaves the old
         * range behind: neither is ours to handle. */
        if (!shim_is_managed() || shim_inside || old_len == 0 || (flags & MREMAP_DONTUNMAP) ||
            new_len > SIZE_MAX / 4) {
                p = raw_mremap(old, old_len, new_len, flags, new_addr);
                /* A process no longer managed (the daemon died, or a forked
                 * child) can still hold a range the daemon split. */
                if (p == MAP_FAILED && errno == EFAULT && shim_was_managed && !shim_inside && old_len != 0 &&
                    !(flags & MREMAP_DONTUNMAP)) {
                        shim_inside = true;
                        p = shim_remap_pieces(old, old_len, new_len, flags, new_addr);
                        shim_inside = false;
                }
                return p;
        }

        /* Growing to managed size where the kernel may pick the place: pick a
         * 2 MiB-aligned one, so managed memory stays aligned when it moves. */
        align = (flags & (MREMAP_MAYMOVE | MREMAP_FIXED)) == MREMAP_MAYMOVE &&
                new_len > old_len && new_len >= shim_min_size;

        shim_inside = true;
        p = shim_mremap(old, old_len, new_len, flags, new_addr, align);
        shim_inside = false;
        return p;
}

static void shim_atfork_prepare(void)
{
        shim_malloc_atfork_prepare();
}

static void shim_atfork_parent(void)
{
        shim_malloc_atfork_parent();
}

/* A forked child gets a connection of its own (fork.c): the one it
 * inherited is the parent's (the uffd and every registration belong to the
 * parent's mm), so close our copy first. Until its own is made, and for good
 * if the daemon refuses it or does not answer in time, the child is
 * unmanaged; the malloc blocks it inherited stay usable either way. */
static void shim_atfork_child(void)
{
        bool was_managed = shim_is_managed(), was_inside = shim_inside;
        int saved_errno = errno, r;
        char why[256] = "";

        shim_unmanage();
        /* Held, perhaps, by a thread that only exists in the parent. */
        pthread_mutex_init(&shim_lock, NULL);
        hp_conn_close(&shim_conn);
        shim_malloc_atfork_child();
        if (!was_managed || !shim_socket_path[0])
                goto out;

        shim_inside = true;
        r = shim_fork_connect(&shim_conn, shim_socket_path, why, sizeof(why));
        if (r == 0)
                atomic_store_explicit(&shim_managed, true, memory_order_release);
        if (shim_debug_on) {
                if (r == 0)
                        shim_debug("managed by %s after fork from pid %d", shim_socket_path, (int)getppid());
                else
                        shim_debug("not managed after fork: %s", why);
        }
        shim_inside = was_inside;
out:
        errno = saved_errno;
}

/* One line at most, written with write(2): no stdio buffer, no allocation. */
_printf_(1, 2)
static void shim_debug(const char *fmt, ...)
{
        char line[512];
        va_list ap;
        int n, prefix;

        prefix = snprintf(line, sizeof(line), "hugepaged: pid %d (%s): ",
                          (int)getpid(), program_invocation_short_name);
        if (prefix < 0 || (size_t)prefix >= sizeof(line))
                return;
        va_start(ap, fmt);
        n = vsnprintf(line + prefix, sizeof(line) - (size_t)prefix - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        n += prefix;
        if ((size_t)n > sizeof(line) - 2)
                n = (int)sizeof(line) - 2;
        line[n++] = '\n';
        (void) !write(STDERR_FILENO, line, (size_t)n);
}

static bool env_flag(const char *name)
{
        const char *e = secure_getenv(name);

        return e && *e && strcmp(e, "0") != 0;
}

/* Read the configuration; 0, or -EINVAL with *why set for the debug line. */
static int shim_parse_env(char *why, size_t why_size)
{
        const char *e;
        uint64_t size;
        int r;

        e = secure_getenv(HP_ENV_MIN_SIZE);
        if (e && *e) {
                r = hp_parse_size(e, &size);
                if (r < 0 || size == 0 || size > SIZE_MAX / 4) {
                        snprintf(why, why_size, "invalid %s=%s", HP_ENV_MIN_SIZE, e);
                        return -EINVAL;
                }
                shim_min_size = (size_t)size;
        }

        e = secure_getenv(HP_ENV_THRESHOLD);
        if (e && *e && hp_parse_threshold(e, 0, &shim_threshold) < 0) {
                snprintf(why, why_size, "invalid %s=%s (0..%u)", HP_ENV_THRESHOLD, e, HP_REGION_PAGES);
                return -EINVAL;
        }

        e = secure_getenv(HP_ENV_BACKEND);
        if (e && *e && strcmp(e, "anon") != 0 && strcmp(e, "hugetlb") != 0) {
                snprintf(why, why_size, "%s=%s is not supported (anon or hugetlb)", HP_ENV_BACKEND, e);
                return -EINVAL;
        }
        shim_backend_hugetlb = e && strcmp(e, "hugetlb") == 0;
        return 0;
}

__attribute__((constructor))
static void shim_init(void)
{
        bool debug = shim_debug_on = env_flag(HP_ENV_DEBUG);
        char why[256] = "";
        const char *path;
        int saved_errno = errno, r;

        shim_inside = true;

        r = shim_parse_env(why, sizeof(why));
        if (r < 0)
                goto out;
        if (sysconf(_SC_PAGESIZE) != (long)HP_PAGE_SIZE) {
                snprintf(why, sizeof(why), "the page size is not 4 KiB");
                goto out;
        }

        path = hp_conn_socket_path(NULL);
        if (strlen(path) < sizeof(shim_socket_path))
                memcpy(shim_socket_path, path, strlen(path) + 1);
        r = hp_conn_open(&shim_conn, path);
        if (r == -ENOENT || r == -ECONNREFUSED) {
                snprintf(why, sizeof(why), "no daemon at %s", path);
                goto out;
        }
        if (r < 0) {
                if (shim_conn.error[0])
                        snprintf(why, sizeof(why), "%s", shim_conn.error);
                else
                        snprintf(why, sizeof(why), "%s: %s", path, strerror(-r));
                goto out;
        }

        r = pthread_atfork(shim_atfork_prepare, shim_atfork_parent, shim_atfork_child);
        if (r != 0) {
                hp_conn_close(&shim_conn);
                snprintf(why, sizeof(why), "pthread_atfork: %s", strerror(r));
                goto out;
        }

        shim_was_managed = true;
        atomic_store_explicit(&shim_managed, true, memory_order_release);
        if (debug) {
                char threshold[16] = "default";
                if (shim_threshold > 0)
                        snprintf(threshold, sizeof(threshold), "%u", shim_threshold);
                shim_debug("managed by %s (mappings of %zu bytes and more, threshold %s%s)",
                           path, shim_min_size, threshold, shim_backend_hugetlb ? ", backend hugetlb" : "");
        }
        shim_inside = false;
        errno = saved_errno;
        return;

out:
        if (debug)
                shim_debug("not managed: %s", why);
        shim_inside = false;
        errno = saved_errno;
}
