/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * malloc.c: the preload shim's malloc family. glibc's malloc maps its large
 * blocks with an internal mmap that LD_PRELOAD cannot interpose, so the shim
 * serves those blocks itself: every request of shim_min_size bytes or more,
 * while the process is managed, gets its own 2 MiB-aligned mapping registered
 * with the daemon. Everything else goes to the allocator the program would
 * have used without the shim.
 *
 * Owns: the registry of live blocks (base address -> length, an open
 * addressing hash table in memory mapped with raw system calls), the
 * resolution of the next definitions of the malloc family, and a small
 * static bootstrap arena for the allocations made while resolving them.
 *
 * Must never:
 *  - touch memory it did not map to tell its blocks from others: a pointer is
 *    ours only if it is 2 MiB-aligned and in the registry, both checked
 *    without dereferencing it;
 *  - take over a program whose malloc is not glibc's (jemalloc, tcmalloc,
 *    ...): then every call is forwarded, unchanged, to the definition the
 *    program would have bound to, and that allocator's own mmap() calls reach
 *    the shim the ordinary way;
 *  - call malloc or anything that may (it would recurse), or hold its lock
 *    while calling into the allocator it forwards to or the daemon;
 *  - cost more than a predictable branch per call in an unmanaged process.
 *
 * Blocks are handed out at their mapping's start (2 MiB-aligned, so also
 * aligned for any alignment the caller may ask up to 2 MiB; larger ones get a
 * mapping aligned as asked). Fresh blocks are zero, so calloc() needs no
 * memset. Up to 64 MiB of freed blocks stay mapped for reuse (malloc_trim()
 * gives them back). A forked child keeps the blocks it inherited (the daemon
 * registers them again in the child when it takes the child on, fork.c) and
 * makes new ones only once it is managed itself.
 */
#undef _FILE_OFFSET_BITS

#include <dlfcn.h>
#include <errno.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "raw.h"
#include "shim.h"

#define _public_ __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* What malloc() guarantees on x86-64: alignof(max_align_t). */
#define HM_MIN_ALIGN 16u

/* ---- the allocator we forward to ------------------------------------------ */

struct hm_fns {
        void *(*malloc)(size_t);
        void *(*calloc)(size_t, size_t);
        void *(*realloc)(void *, size_t);
        void *(*reallocarray)(void *, size_t, size_t);
        void (*free)(void *);
        int (*posix_memalign)(void **, size_t, size_t);
        void *(*aligned_alloc)(size_t, size_t);
        void *(*memalign)(size_t, size_t);
        void *(*valloc)(size_t);
        void *(*pvalloc)(size_t);
        size_t (*usable_size)(void *);
        int (*trim)(size_t);                    /* may be NULL */
};

static struct hm_fns hm_next_fns;               /* written once, before hm_resolved */
static atomic_bool hm_resolved;
static bool hm_glibc;                           /* the forwarded-to allocator is glibc's */
static pthread_mutex_t hm_resolve_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread bool hm_resolving __attribute__((tls_model("initial-exec")));

/* Set when the first block is made, never cleared: until then free() and
 * friends look at nothing but this flag. */
static atomic_bool hm_have_blocks;

/* ---- bootstrap arena ----------------------------------------------------------
 * dlsym() may allocate (it does not in glibc 2.36 on success, but nothing
 * promises that): what it asks for while this thread resolves comes from
 * here, and is never given back. */

#define HM_BOOT_SIZE (64u << 10)

static alignas(64) unsigned char hm_boot[HM_BOOT_SIZE];
static atomic_size_t hm_boot_used;

static bool hm_boot_owns(const void *p)
{
        return (const unsigned char *)p >= hm_boot && (const unsigned char *)p < hm_boot + HM_BOOT_SIZE;
}

/* The block's size is kept in the 16 bytes before it. Static memory is zero:
 * good for calloc too. */
static void *hm_boot_alloc(size_t n, size_t align)
{
        size_t used, start, end;

        if (align < HM_MIN_ALIGN)
                align = HM_MIN_ALIGN;
        if (n > HM_BOOT_SIZE || align > HM_BOOT_SIZE / 4)
                goto fail;
        used = atomic_load_explicit(&hm_boot_used, memory_order_relaxed);
        do {
                start = (used + HM_MIN_ALIGN + align - 1) & ~(align - 1);
                end = start + ((n + HM_MIN_ALIGN - 1) & ~(size_t)(HM_MIN_ALIGN - 1));
                if (end > HM_BOOT_SIZE)
                        goto fail;
        } while (!atomic_compare_exchange_weak_explicit(&hm_boot_used, &used, end,
                                                        memory_order_relaxed, memory_order_relaxed));
        memcpy(hm_boot + start - sizeof(size_t), &n, sizeof(n));
        return hm_boot + start;
fail:
        errno = ENOMEM;
        return NULL;
}

static size_t hm_boot_size(const void *p)
{
        size_t n;

        memcpy(&n, (const unsigned char *)p - sizeof(size_t), sizeof(n));
        return n;
}

static void *hm_resolve_one(const char *name)
{
        return dlsym(RTLD_NEXT, name);
}

/* Is fn defined in the same object as libc_fn? No allocation in dladdr(). */
static bool hm_same_object(void *fn, void *libc_fn)
{
        Dl_info a, b;

        return fn && dladdr(fn, &a) != 0 && dladdr(libc_fn, &b) != 0 && a.dli_fbase == b.dli_fbase;
}

/*
 * Find the definitions the program would use without the shim: the next
 * ones after ours in the lookup order. Returns them, or NULL while this very
 * thread is resolving (dlsym() asking for memory): the caller then uses the
 * bootstrap arena.
 */
static __attribute__((noinline)) const struct hm_fns *hm_resolve(void)
{
        struct hm_fns f;

        if (hm_resolving)
                return NULL;
        hm_resolving = true;
        pthread_mutex_lock(&hm_resolve_lock);
        if (atomic_load_explicit(&hm_resolved, memory_order_acquire))
                goto out;

        f = (struct hm_fns) {
                .malloc = hm_resolve_one("malloc"),
                .calloc = hm_resolve_one("calloc"),
                .realloc = hm_resolve_one("realloc"),
                .reallocarray = hm_resolve_one("reallocarray"),
                .free = hm_resolve_one("free"),
                .posix_memalign = hm_resolve_one("posix_memalign"),
                .aligned_alloc = hm_resolve_one("aligned_alloc"),
                .memalign = hm_resolve_one("memalign"),
                .valloc = hm_resolve_one("valloc"),
                .pvalloc = hm_resolve_one("pvalloc"),
                .usable_size = hm_resolve_one("malloc_usable_size"),
                .trim = hm_resolve_one("malloc_trim"),
        };
        /* Without the core four nothing can work: there is no allocator after
         * us. That cannot happen with glibc; give up loudly rather than
         * corrupt memory. */
        if (!f.malloc || !f.calloc || !f.realloc || !f.free)
                abort();

        /* Take blocks over only if the program's malloc is glibc's. (An
         * executable that defines its own malloc wins over any preloaded
         * one: then nobody calls ours.) */
        hm_glibc = hm_same_object((void *)f.malloc, (void *)gnu_get_libc_version) &&
                   hm_same_object((void *)f.calloc, (void *)gnu_get_libc_version) &&
                   hm_same_object((void *)f.realloc, (void *)gnu_get_libc_version) &&
                   hm_same_object((void *)f.free, (void *)gnu_get_libc_version) &&
                   f.posix_memalign && f.aligned_alloc && f.memalign && f.valloc && f.pvalloc &&
                   f.usable_size && f.reallocarray;
        hm_next_fns = f;
        atomic_store_explicit(&hm_resolved, true, memory_order_release);
out:
        pthread_mutex_unlock(&hm_resolve_lock);
        hm_resolving = false;
        return &hm_next_fns;
}

static inline const struct hm_fns *hm_next(void)
{
        if (likely(atomic_load_explicit(&hm_resolved, memory_order_acquire)))
                return &hm_next_fns;
        return hm_resolve();
}

/* May a request of n bytes get a new block of ours? */
static inline bool hm_takes(size_t n)
{
        return n >= shim_min_size && hm_glibc && shim_is_managed() && !shim_inside;
}

/* ---- the registry of live blocks ------------------------------------------ */

struct hm_entry {
        uintptr_t base;         /* 0: free slot */
        size_t len;
};

static pthread_mutex_t hm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hm_entry *hm_table;       /* under hm_lock; raw-mapped */
static size_t hm_cap;                   /* slots, a power of two */
/* Entries plus the slots kept for blocks being mapped or resized, so that
 * their insertion never needs to grow the table. */
static size_t hm_count;

#define HM_CAP_MIN 512u

static size_t hm_slot(uintptr_t base, size_t cap)
{
        uint64_t h = (uint64_t)(base >> 21) * UINT64_C(0x9E3779B97F4A7C15);

        return (size_t)(h >> 32) & (cap - 1);
}

static struct hm_entry *hm_find(uintptr_t base)
{
        if (!hm_table)
                return NULL;
        for (size_t i = hm_slot(base, hm_cap);; i = (i + 1) & (hm_cap - 1)) {
                if (hm_table[i].base == base)
                        return &hm_table[i];
                if (hm_table[i].base == 0)
                        return NULL;
        }
}

/* Insert into a table with room (the load factor stays at most 1/2). */
static void hm_insert_slot(struct hm_entry *table, size_t cap, uintptr_t base, size_t len)
{
        size_t i = hm_slot(base, cap);

        while (table[i].base != 0)
                i = (i + 1) & (cap - 1);
        table[i] = (struct hm_entry) { .base = base, .len = len };
}

/* Remove an entry, shifting the following ones back (no tombstones). */
static void hm_remove_entry(struct hm_entry *e)
{
        size_t mask = hm_cap - 1, i = (size_t)(e - hm_table), j = i;

        for (;;) {
                j = (j + 1) & mask;
                if (hm_table[j].base == 0)
                        break;
                size_t k = hm_slot(hm_table[j].base, hm_cap);
                /* move j into the hole at i unless its home k lies in (i, j] */
                if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
                        hm_table[i] = hm_table[j];
                        i = j;
                }
        }
        hm_table[i] = (struct hm_entry) {};
}

/* Room for one more entry: 0 or -ENOMEM. Under hm_lock. */
static int hm_reserve(void)
{
        struct hm_entry *table;
        size_t cap;

        if (hm_table && (hm_count + 1) * 2 <= hm_cap)
                goto done;
        cap = hm_table ? hm_cap * 2 : HM_CAP_MIN;
        table = raw_mmap(NULL, cap * sizeof(*table), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (table == MAP_FAILED)
                return -ENOMEM;
        for (size_t i = 0; hm_table && i < hm_cap; i++)
                if (hm_table[i].base)
                        hm_insert_slot(table, cap, hm_table[i].base, hm_table[i].len);
        if (hm_table)
                raw_munmap(hm_table, hm_cap * sizeof(*table));
        hm_table = table;
        hm_cap = cap;
done:
        hm_count++;
        return 0;
}

/* Quick filter: might p be one of our blocks? No memory access at p. */
static inline bool hm_maybe_ours(const void *p)
{
        return atomic_load_explicit(&hm_have_blocks, memory_order_acquire) &&
               p && ((uintptr_t)p & (HP_REGION_SIZE - 1)) == 0;
}

/* The length of our block at p, or 0 if p is not one. */
static size_t hm_block_len(const void *p)
{
        struct hm_entry *e;
        size_t len = 0;

        pthread_mutex_lock(&hm_lock);
        e = hm_find((uintptr_t)p);
        if (e)
                len = e->len;
        pthread_mutex_unlock(&hm_lock);
        return len;
}

/* Take p out of the registry, keeping its slot reserved for hm_block_put().
 * Returns its length, or 0 if p is not ours. */
static size_t hm_block_take(const void *p)
{
        struct hm_entry *e;
        size_t len = 0;

        pthread_mutex_lock(&hm_lock);
        e = hm_find((uintptr_t)p);
        if (e) {
                len = e->len;
                hm_remove_entry(e);
        }
        pthread_mutex_unlock(&hm_lock);
        return len;
}

/* Put a block in a slot reserved with hm_reserve() or kept by hm_block_take(). */
static void hm_block_put(void *p, size_t len)
{
        pthread_mutex_lock(&hm_lock);
        hm_insert_slot(hm_table, hm_cap, (uintptr_t)p, len);
        pthread_mutex_unlock(&hm_lock);
}

static void hm_slot_release(void)
{
        pthread_mutex_lock(&hm_lock);
        hm_count--;
        pthread_mutex_unlock(&hm_lock);
}

/* The mapping length for n bytes: whole 2 MiB regions (all of them can become
 * huge, and small growth stays in place), whole pages below 2 MiB. 0 if n is
 * too large to map. */
static size_t hm_len_for(size_t n)
{
        if (n == 0 || n > SIZE_MAX / 4)
                return 0;
        return hp_round_up(n, n >= HP_REGION_SIZE ? HP_REGION_SIZE : HP_PAGE_SIZE);
}

/* ---- freed blocks kept for reuse -----------------------------------------------
 * A program that makes and drops large blocks in a loop (a Python bytes
 * temporary, a growing buffer) would otherwise pay a mapping, a request to
 * the daemon, first-touch faults and an unmap each time, where glibc reuses
 * its heap. A few freed blocks stay mapped, populated and registered, like
 * memory glibc keeps at the top of its heap (its trim threshold is at most
 * 64 MiB too). Only while managed; emptied when that ends. */

#define HM_CACHE_SLOTS 8
#define HM_CACHE_BYTES (64u << 20)
#define HM_CACHE_BLOCK_MAX (32u << 20)

static struct hm_entry hm_cache[HM_CACHE_SLOTS];        /* under hm_lock; base 0: empty */
static size_t hm_cache_bytes;                           /* under hm_lock */

/* Take the best-fitting cached block for len bytes (at most 25% larger)
 * out of the cache. Under hm_lock. */
static struct hm_entry hm_cache_take(size_t len)
{
        struct hm_entry *best = NULL, e = {};

        for (unsigned i = 0; i < HM_CACHE_SLOTS; i++) {
                struct hm_entry *c = &hm_cache[i];
                if (c->base && c->len >= len && c->len <= len + len / 4 && (!best || c->len < best->len))
                        best = c;
        }
        if (best) {
                e = *best;
                *best = (struct hm_entry) {};
                hm_cache_bytes -= e.len;
        }
        return e;
}

/* Keep a freed block if there is room. Under hm_lock. */
static bool hm_cache_put(uintptr_t base, size_t len)
{
        if (len > HM_CACHE_BLOCK_MAX || hm_cache_bytes + len > HM_CACHE_BYTES || !shim_is_managed())
                return false;
        for (unsigned i = 0; i < HM_CACHE_SLOTS; i++) {
                if (hm_cache[i].base == 0) {
                        hm_cache[i] = (struct hm_entry) { .base = base, .len = len };
                        hm_cache_bytes += len;
                        return true;
                }
        }
        return false;
}

/* Move every cached block to out[] (HM_CACHE_SLOTS entries) for unmapping
 * outside the lock. Under hm_lock. */
static unsigned hm_cache_drain(struct hm_entry out[])
{
        unsigned n = 0;

        for (unsigned i = 0; i < HM_CACHE_SLOTS; i++) {
                if (hm_cache[i].base) {
                        out[n++] = hm_cache[i];
                        hm_cache[i] = (struct hm_entry) {};
                }
        }
        hm_cache_bytes = 0;
        return n;
}

static void hm_unmap_all(const struct hm_entry *e, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                (void) raw_munmap((void *)e[i].base, e[i].len);
}

/*
 * A block of at least n bytes aligned to align (a power of two), zero-filled
 * if zero, or NULL with errno unchanged: the caller then asks the allocator
 * it forwards to. A fresh mapping is zero already; a reused one is cleared.
 */
static void *hm_block_new(size_t n, size_t align, bool zero)
{
        int saved_errno = errno;
        size_t len = hm_len_for(n);
        struct hm_entry reuse = {};
        void *p;
        int r;

        if (len == 0 || align > SIZE_MAX / 4)
                return NULL;
        pthread_mutex_lock(&hm_lock);
        r = hm_reserve();
        if (r == 0 && align <= HP_REGION_SIZE) {
                reuse = hm_cache_take(len);
                if (reuse.base)
                        hm_insert_slot(hm_table, hm_cap, reuse.base, reuse.len);
        }
        pthread_mutex_unlock(&hm_lock);
        if (r < 0)
                return NULL;
        if (reuse.base) {
                if (zero)
                        memset((void *)reuse.base, 0, n);
                return (void *)reuse.base;
        }

        p = shim_map_block(len, align < HP_REGION_SIZE ? HP_REGION_SIZE : align);
        if (p == MAP_FAILED) {
                hm_slot_release();
                errno = saved_errno;
                return NULL;
        }
        hm_block_put(p, len);
        atomic_store_explicit(&hm_have_blocks, true, memory_order_release);
        return p;
}

/* Free p if it is ours; false if it is not. */
static bool hm_block_free(void *p)
{
        struct hm_entry drained[HM_CACHE_SLOTS];
        unsigned ndrained = 0;
        struct hm_entry *e;
        size_t len = 0;
        bool kept = false;

        pthread_mutex_lock(&hm_lock);
        e = hm_find((uintptr_t)p);
        if (e) {
                len = e->len;
                hm_remove_entry(e);
                hm_count--;
                kept = hm_cache_put((uintptr_t)p, len);
                if (!kept && hm_cache_bytes > 0 && !shim_is_managed())
                        ndrained = hm_cache_drain(drained);
        }
        pthread_mutex_unlock(&hm_lock);
        if (len == 0)
                return false;
        /* the daemon learns of it from the uffd's UNMAP event */
        if (!kept)
                (void) raw_munmap(p, len);
        hm_unmap_all(drained, ndrained);
        return true;
}

/* realloc() of our block p (len bytes) to n > 0 bytes. */
static void *hm_block_realloc(const struct hm_fns *nx, void *p, size_t len, size_t n)
{
        size_t new_len = hm_len_for(n);
        int saved_errno = errno;
        void *q;

        if (n < shim_min_size || new_len == 0) {
                /* Small again: back to the ordinary allocator. Too large:
                 * let it fail the way it does. */
                q = nx->malloc(n);
                if (!q)
                        return NULL;
                memcpy(q, p, n < len ? n : len);
                hm_block_free(p);
                return q;
        }
        if (new_len == len)
                return p;

        /* Out of the registry while it moves: once moved, its old address is
         * free for another thread's new block. Its slot stays reserved. */
        if (hm_block_take(p) == 0)
                return NULL;    /* cannot happen: the caller found it */
        q = shim_remap_block(p, len, new_len);
        if (q != MAP_FAILED) {
                hm_block_put(q, new_len);
                errno = saved_errno;
                return q;
        }
        hm_block_put(p, len);
        if (new_len < len) {
                /* could not give the tail back: keep it all */
                errno = saved_errno;
                return p;
        }

        /* mremap() failed (no room to grow or move, or a forked child's
         * mapping split by a promotion that was in flight at fork): copy. */
        errno = saved_errno;
        q = hm_takes(n) ? hm_block_new(n, HM_MIN_ALIGN, false) : NULL;
        if (!q)
                q = nx->malloc(n);
        if (!q)
                return NULL;
        memcpy(q, p, len);
        hm_block_free(p);
        return q;
}

/* ---- the interposed functions -------------------------------------------------- */

_public_ void *malloc(size_t n)
{
        const struct hm_fns *nx = hm_next();
        void *p;

        if (unlikely(!nx))
                return hm_boot_alloc(n, HM_MIN_ALIGN);
        if (unlikely(hm_takes(n)) && (p = hm_block_new(n, HM_MIN_ALIGN, false)))
                return p;
        return nx->malloc(n);
}

_public_ void free(void *p)
{
        const struct hm_fns *nx;

        if (unlikely(hm_maybe_ours(p)) && hm_block_free(p))
                return;
        if (unlikely(hm_boot_owns(p)))
                return;
        nx = hm_next();
        if (likely(nx))
                nx->free(p);
}

_public_ void cfree(void *p);
_public_ void cfree(void *p)
{
        free(p);
}

_public_ void *calloc(size_t nmemb, size_t size)
{
        const struct hm_fns *nx = hm_next();
        size_t n;
        void *p;

        if (unlikely(!nx)) {
                if (__builtin_mul_overflow(nmemb, size, &n)) {
                        errno = ENOMEM;
                        return NULL;
                }
                return hm_boot_alloc(n, HM_MIN_ALIGN);
        }
        /* a fresh mapping is zero (the daemon serves zero pages too) */
        if (unlikely(!__builtin_mul_overflow(nmemb, size, &n) && hm_takes(n)) &&
            (p = hm_block_new(n, HM_MIN_ALIGN, true)))
                return p;
        return nx->calloc(nmemb, size);
}

_public_ void *realloc(void *p, size_t n)
{
        const struct hm_fns *nx = hm_next();
        size_t len;
        void *q;

        if (unlikely(!nx || hm_boot_owns(p))) {
                /* a bootstrap block never moves back: copy it out */
                if (!p)
                        return nx ? malloc(n) : hm_boot_alloc(n, HM_MIN_ALIGN);
                q = nx ? malloc(n) : hm_boot_alloc(n, HM_MIN_ALIGN);
                if (q) {
                        len = hm_boot_owns(p) ? hm_boot_size(p) : 0;
                        memcpy(q, p, len < n ? len : n);
                }
                return q;
        }
        if (!p)
                return malloc(n);

        if (unlikely(hm_maybe_ours(p)) && (len = hm_block_len(p)) > 0) {
                if (n == 0) {
                        /* like glibc: realloc(p, 0) frees p */
                        hm_block_free(p);
                        return NULL;
                }
                return hm_block_realloc(nx, p, len, n);
        }

        /* One of glibc's growing to managed size: move it into a block once;
         * it grows with mremap() from then on. */
        if (unlikely(hm_takes(n))) {
                len = nx->usable_size(p);
                if (len < n && (q = hm_block_new(n, HM_MIN_ALIGN, false))) {
                        memcpy(q, p, len);
                        nx->free(p);
                        return q;
                }
        }
        return nx->realloc(p, n);
}

_public_ void *reallocarray(void *p, size_t nmemb, size_t size)
{
        const struct hm_fns *nx = hm_next();
        size_t n;

        if (nx && !hm_glibc && !hm_boot_owns(p))
                return nx->reallocarray(p, nmemb, size);
        if (__builtin_mul_overflow(nmemb, size, &n)) {
                errno = ENOMEM;
                return NULL;
        }
        /* glibc's reallocarray() would call its own realloc(), blind to our
         * blocks */
        return realloc(p, n);
}

static bool is_power_of_2(size_t v)
{
        return v && (v & (v - 1)) == 0;
}

_public_ int posix_memalign(void **ret, size_t align, size_t n)
{
        const struct hm_fns *nx = hm_next();
        int saved_errno = errno;
        void *p;

        if (unlikely(!nx)) {
                if (!is_power_of_2(align) || align % sizeof(void *))
                        return EINVAL;
                p = hm_boot_alloc(n, align);
                errno = saved_errno;
                if (!p)
                        return ENOMEM;
                *ret = p;
                return 0;
        }
        if (unlikely(hm_takes(n)) && is_power_of_2(align) && align % sizeof(void *) == 0 &&
            (p = hm_block_new(n, align, false))) {
                *ret = p;
                return 0;
        }
        return nx->posix_memalign(ret, align, n);
}

/* memalign(), aligned_alloc(), valloc(), pvalloc(): ours for a power-of-two
 * alignment; glibc decides what odd alignments mean. */
static void *hm_aligned(size_t align, size_t n)
{
        if (unlikely(hm_takes(n)) && is_power_of_2(align))
                return hm_block_new(n, align, false);
        return NULL;
}

_public_ void *memalign(size_t align, size_t n)
{
        const struct hm_fns *nx = hm_next();
        void *p;

        if (unlikely(!nx))
                return is_power_of_2(align) ? hm_boot_alloc(n, align) : NULL;
        if ((p = hm_aligned(align, n)))
                return p;
        return nx->memalign(align, n);
}

_public_ void *aligned_alloc(size_t align, size_t n)
{
        const struct hm_fns *nx = hm_next();
        void *p;

        if (unlikely(!nx))
                return is_power_of_2(align) ? hm_boot_alloc(n, align) : NULL;
        if ((p = hm_aligned(align, n)))
                return p;
        return nx->aligned_alloc(align, n);
}

_public_ void *valloc(size_t n)
{
        const struct hm_fns *nx = hm_next();
        void *p;

        if (unlikely(!nx))
                return hm_boot_alloc(n, HP_PAGE_SIZE);
        if ((p = hm_aligned(HP_PAGE_SIZE, n)))
                return p;
        return nx->valloc(n);
}

_public_ void *pvalloc(size_t n)
{
        const struct hm_fns *nx = hm_next();
        size_t rounded = n ? hp_round_up(n, HP_PAGE_SIZE) : HP_PAGE_SIZE;
        void *p;

        if (unlikely(!nx))
                return hm_boot_alloc(rounded, HP_PAGE_SIZE);
        if (rounded >= n && (p = hm_aligned(HP_PAGE_SIZE, rounded)))
                return p;
        return nx->pvalloc(n);
}

_public_ size_t malloc_usable_size(void *p)
{
        const struct hm_fns *nx;
        size_t len;

        if (unlikely(hm_maybe_ours(p)) && (len = hm_block_len(p)) > 0)
                return len;
        if (unlikely(hm_boot_owns(p)))
                return hm_boot_size(p);
        nx = hm_next();
        return nx ? nx->usable_size(p) : 0;
}

/* Give back what the cache of freed blocks holds, then what glibc holds. */
_public_ int malloc_trim(size_t pad)
{
        const struct hm_fns *nx = hm_next();
        struct hm_entry drained[HM_CACHE_SLOTS];
        unsigned n;

        pthread_mutex_lock(&hm_lock);
        n = hm_cache_drain(drained);
        pthread_mutex_unlock(&hm_lock);
        hm_unmap_all(drained, n);
        return ((nx && nx->trim) ? nx->trim(pad) : 0) || n > 0;
}

/* ---- fork ------------------------------------------------------------------- */

/* The registry must be consistent in the child, which keeps using it. */
void shim_malloc_atfork_prepare(void)
{
        pthread_mutex_lock(&hm_lock);
}

void shim_malloc_atfork_parent(void)
{
        pthread_mutex_unlock(&hm_lock);
}

/* The child is unmanaged: it keeps its blocks but needs no cache. */
void shim_malloc_atfork_child(void)
{
        struct hm_entry drained[HM_CACHE_SLOTS];
        unsigned n;

        pthread_mutex_init(&hm_lock, NULL);
        n = hm_cache_drain(drained);
        hm_unmap_all(drained, n);
}
