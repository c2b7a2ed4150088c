/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shim-check.c: an ordinary program that does, with plain libc calls, what
 * real allocators and runtimes do, so that tests/programs/shim.py can run it
 * under hugepaged-run and check that the preload shim keeps every promise of
 * the calls it interposes.
 *
 *   shim-check MODE [ARGS]
 *
 *   malloc           the malloc family, small and large: contents, zeroing,
 *                    alignment, usable size, realloc across the managed size
 *                    in both directions, realloc growth to 384 MiB by mremap
 *   threads N ITER   N threads allocate, resize, verify and free large blocks
 *                    at once, and free each other's
 *   remap N          N blocks of 1 to 4 regions written whole and grown by
 *                    realloc() at once, while the daemon promotes them
 *   fork             fork() without exec: the child reads, resizes and frees
 *                    the parent's blocks and makes new (unmanaged) ones; the
 *                    parent's data is unaffected
 *   exec             execs itself as `shim-check malloc` (the new image must
 *                    connect on its own)
 *   spawn            posix_spawn() and vfork()+exec of `shim-check malloc`
 *   signals          faults into managed memory under a storm of signals
 *   closefds         closes every fd >= 3 first thing, refills the fd table,
 *                    then maps and allocates (the shim must notice that its
 *                    socket is gone and never touch the fds that replaced it)
 *   protnone         a reservation mapped PROT_NONE and opened with mprotect()
 *                    piece by piece, like glibc's arena heaps, shrunk with
 *                    MAP_FIXED and MADV_DONTNEED; then a block purged like
 *                    jemalloc purges (MADV_FREE, MADV_DONTNEED)
 *   split            a block made of two mappings the kernel will not merge
 *                    (what a region split off by the daemon can leave): under
 *                    the shim mremap() grows, moves and shrinks it like one
 *                    mapping; without it the kernel says EFAULT
 *   churn N          N rounds of mmap/mremap/munmap and malloc/calloc/realloc/
 *                    free (for counting the shim's system calls)
 *
 * It never links hugepaged code. With HP_EXPECT=managed it also checks that
 * large blocks are what the shim promises (2 MiB-aligned, registered with
 * the daemon: "um" in their VmFlags); with HP_EXPECT=registered it only
 * counts those registered (another allocator, hugepaged-run --allocator,
 * places blocks inside the large mappings the shim manages, aligned as it
 * likes, and may give parts of them back); with HP_EXPECT=unmanaged that
 * they are not registered. Every page written carries a pattern of (seed, page), so
 * data that comes back zero or from the wrong place is reported.
 *
 * Prints key=value lines (pid=, mismatches=, ...); exit status 0 when every
 * check passed, 1 when one failed, 2 on a usage or system error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE    4096ul
#define REGION  (2ul << 20)
#define MiB     (1ul << 20)
#define GOLDEN  UINT64_C(0x9E3779B97F4A7C15)

extern char **environ;

static const char *self_path;
static atomic_ulong failures;
static enum { EXPECT_ANY, EXPECT_MANAGED, EXPECT_REGISTERED, EXPECT_UNMANAGED } expect;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
        va_list ap;

        fputs("shim-check: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(2);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
        va_list ap;

        if (atomic_fetch_add(&failures, 1) >= 20)
                return;
        fprintf(stderr, "shim-check[%d]: FAILED: ", (int)getpid());
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

#define check(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

static uint64_t pattern(uint64_t seed, size_t page)
{
        return (seed * GOLDEN) ^ ((uint64_t)page * 0xD6E8FEB86659FD93ull) ^ 0x5555;
}

/* Write one word per page, at a page-dependent offset. */
static void fill(void *p, size_t len, uint64_t seed)
{
        unsigned char *b = p;

        for (size_t pg = 0; pg * PAGE < len; pg++) {
                size_t off = pg * PAGE + (pg % 64) * 8;
                if (off + 8 <= len) {
                        uint64_t v = pattern(seed, pg);
                        memcpy(b + off, &v, 8);
                }
        }
}

/* Check what fill(p, ..., seed) wrote in [p + from, p + from + len), from a
 * multiple of the page size; returns the mismatches. */
static size_t verify_part(const void *p, size_t from, size_t len, uint64_t seed, const char *what)
{
        const unsigned char *b = p;
        size_t bad = 0;

        for (size_t pg = from / PAGE; pg * PAGE < from + len; pg++) {
                size_t off = pg * PAGE + (pg % 64) * 8;
                uint64_t v;
                if (off + 8 > from + len)
                        continue;
                memcpy(&v, b + off, 8);
                if (v != pattern(seed, pg)) {
                        if (bad++ < 3)
                                fail("%s: page %zu of %zu holds %#" PRIx64 ", expected %#" PRIx64,
                                     what, pg, len / PAGE, v, pattern(seed, pg));
                }
        }
        return bad;
}

/* Check what fill() wrote in the first len bytes. */
static size_t verify(const void *p, size_t len, uint64_t seed, const char *what)
{
        return verify_part(p, 0, len, seed, what);
}

static bool all_zero(const void *p, size_t len)
{
        const unsigned char *b = p;

        for (size_t i = 0; i < len; i += 512)
                if (b[i])
                        return false;
        return len == 0 || b[len - 1] == 0;
}

/* The VmFlags of the mapping holding addr ("" if none). */
/* malloc_libs=: the file names of the malloc libraries mapped here (or none). */
static void print_malloc_libs(void)
{
        char line[512], seen[1024] = "";
        size_t len = 0;
        FILE *f = fopen("/proc/self/maps", "re");

        while (f && fgets(line, sizeof(line), f)) {
                char *name = strrchr(line, '/');
                if (!name || !strstr(name, "malloc"))
                        continue;
                name++;
                name[strcspn(name, "\n")] = '\0';
                if (strstr(seen, name))
                        continue;
                len += (size_t)snprintf(seen + len, len < sizeof(seen) ? sizeof(seen) - len : 0, "%s%s",
                                        len ? "," : "", name);
                if (len >= sizeof(seen))
                        break;
        }
        if (f)
                fclose(f);
        printf("malloc_libs=%s\n", seen[0] ? seen : "none");
}

static void vma_flags(const void *addr, char *out, size_t size)
{
        uintptr_t a = (uintptr_t)addr;
        char line[512];
        bool in = false;
        FILE *f;

        out[0] = '\0';
        f = fopen("/proc/self/smaps", "re");
        if (!f)
                die("open /proc/self/smaps: %m");
        while (fgets(line, sizeof(line), f)) {
                uintptr_t s, e;
                if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &s, &e) == 2) {
                        in = a >= s && a < e;
                        continue;
                }
                if (in && strncmp(line, "VmFlags:", 8) == 0) {
                        snprintf(out, size, "%s", line + 8);
                        break;
                }
        }
        fclose(f);
}

static bool has_flag(const char *flags, const char *flag)
{
        size_t n = strlen(flag);

        for (const char *p = flags; (p = strstr(p, flag)); p += n)
                if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
                        return true;
        return false;
}

static atomic_ulong blocks_registered, blocks_seen;

/* A large block just made: is it what the shim promises? */
static void check_block(void *p, size_t n, const char *what)
{
        char flags[512];
        bool um;

        if (!p || n < REGION || expect == EXPECT_ANY)
                return;
        vma_flags(p, flags, sizeof(flags));
        um = has_flag(flags, "um");
        /* A region the daemon is promoting is unregistered for the time of
         * its collapse (or, ahead of a sequential stream, until the stream
         * gets there or 100 ms pass): it must be registered again after. */
        for (int i = 0; !um && (expect == EXPECT_MANAGED || expect == EXPECT_REGISTERED) && i < 1000; i++) {
                usleep(10000);
                vma_flags(p, flags, sizeof(flags));
                um = has_flag(flags, "um");
        }
        blocks_seen++;
        blocks_registered += um;
        if (expect == EXPECT_REGISTERED) {
                return;         /* counted: the caller compares */
        } else if (expect == EXPECT_MANAGED) {
                check(((uintptr_t)p & (REGION - 1)) == 0, "%s: managed block %p is not 2 MiB-aligned", what, p);
                check(um, "%s: block %p (%zu bytes) is not registered with the daemon (VmFlags:%s)",
                      what, p, n, flags);
        } else {
                check(!um, "%s: block %p is registered although the process is unmanaged", what, p);
        }
}

/* ---- malloc -------------------------------------------------------------------- */

static void mode_malloc(void)
{
        static const size_t sizes[] = { 1, 100, 4096, 200000, REGION - 1, REGION, REGION + 1,
                                        3 * MiB + 17, 64 * MiB, 80 * MiB + 5 };
        uint64_t seed = 1;
        void *p, *q;
        size_t n;

        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                n = sizes[i];

                p = malloc(n);
                check(p && ((uintptr_t)p & 15) == 0, "malloc(%zu) = %p", n, p);
                check(malloc_usable_size(p) >= n, "malloc_usable_size(malloc(%zu)) = %zu", n,
                      malloc_usable_size(p));
                check_block(p, n, "malloc");
                fill(p, n, ++seed);
                verify(p, n, seed, "malloc");
                free(p);

                p = calloc(1, n);
                check(p && all_zero(p, n), "calloc(1, %zu) is zero", n);
                check_block(p, n, "calloc");
                fill(p, n, ++seed);
                /* calloc again after a free: memory given back must come back zero */
                free(p);
                p = calloc(n, 1);
                check(p && all_zero(p, n), "calloc(%zu, 1) after a free is zero", n);
                free(p);

                for (size_t align = 16; align <= 64 * MiB; align <<= 3) {
                        q = NULL;
                        int r = posix_memalign(&q, align, n);
                        check(r == 0 && q && ((uintptr_t)q & (align - 1)) == 0,
                              "posix_memalign(%zu, %zu) = %d, %p", align, n, r, q);
                        check_block(q, n, "posix_memalign");
                        fill(q, n < 8 * MiB ? n : 8 * MiB, ++seed);
                        verify(q, n < 8 * MiB ? n : 8 * MiB, seed, "posix_memalign");
                        free(q);
                        q = aligned_alloc(align, n);
                        check(q && ((uintptr_t)q & (align - 1)) == 0, "aligned_alloc(%zu, %zu) = %p", align, n, q);
                        free(q);
                        q = memalign(align, n);
                        check(q && ((uintptr_t)q & (align - 1)) == 0, "memalign(%zu, %zu) = %p", align, n, q);
                        free(q);
                }
                q = valloc(n);
                check(q && ((uintptr_t)q & (PAGE - 1)) == 0, "valloc(%zu) = %p", n, q);
                free(q);
                q = pvalloc(n);
                check(q && ((uintptr_t)q & (PAGE - 1)) == 0 && malloc_usable_size(q) >= ((n + PAGE - 1) & ~(PAGE - 1)),
                      "pvalloc(%zu) = %p", n, q);
                free(q);
        }

        /* errors behave as glibc's */
        errno = 0;
        volatile size_t huge = SIZE_MAX / 2;    /* volatile: no compile-time warning */
        p = calloc(huge, 4);
        check(!p && errno == ENOMEM, "calloc overflow fails with ENOMEM");
        errno = 0;
        p = reallocarray(NULL, huge, 4);
        check(!p && errno == ENOMEM, "reallocarray overflow fails with ENOMEM");
        q = NULL;
        check(posix_memalign(&q, 24, 4 * MiB) == EINVAL && !q, "posix_memalign(24) is EINVAL");
        free(NULL);

        /* realloc: small -> large -> larger -> small, contents kept */
        n = 1000;
        p = malloc(n);
        fill(p, n, ++seed);
        for (size_t to = 3 * MiB; to <= 384 * MiB; to *= 2) {
                p = realloc(p, to);
                check(p != NULL, "realloc to %zu", to);
                if (!p)
                        die("realloc to %zu failed", to);
                check_block(p, to, "realloc grown");
                verify(p, n, seed, "realloc grown");
                fill(p, to, ++seed);
                n = to;
        }
        p = realloc(p, 5 * MiB);
        check(p != NULL, "realloc shrink to 5 MiB");
        verify(p, 5 * MiB, seed, "realloc shrunk");
        p = realloc(p, 64 * 1024);
        check(p != NULL, "realloc back below the managed size");
        verify(p, 64 * 1024, seed, "realloc back below the managed size");
        p = realloc(p, 0);
        check(p == NULL, "realloc(p, 0) frees like glibc");

        /* reallocarray of a large block */
        p = reallocarray(NULL, 1024, 4 * 1024);
        check_block(p, 4 * MiB, "reallocarray");
        fill(p, 4 * MiB, ++seed);
        p = reallocarray(p, 2048, 4 * 1024);
        verify(p, 4 * MiB, seed, "reallocarray grown");
        free(p);

        /* a freed block reused, given back by malloc_trim, made again */
        p = malloc(16 * MiB);
        fill(p, 16 * MiB, ++seed);
        free(p);
        q = calloc(16, MiB);
        check(q && all_zero(q, 16 * MiB), "calloc of a size just freed is zero");
        fill(q, 16 * MiB, ++seed);
        free(q);
        malloc_trim(0);
        q = malloc(16 * MiB);
        check_block(q, 16 * MiB, "malloc after malloc_trim");
        fill(q, 16 * MiB, ++seed);
        verify(q, 16 * MiB, seed, "malloc after malloc_trim");
        free(q);

        /* glibc-owned pointers that happen to look like ours: 2 MiB-aligned */
        p = memalign(REGION, 64);
        check(p && ((uintptr_t)p & (REGION - 1)) == 0, "memalign(2 MiB, 64)");
        memset(p, 1, 64);
        check(malloc_usable_size(p) >= 64 && malloc_usable_size(p) < REGION,
              "a small 2 MiB-aligned glibc block keeps glibc's usable size");
        free(p);
        /* MADV_DONTNEED on a block (glibc and jemalloc do it to their heaps) */
        p = malloc(32 * MiB);
        fill(p, 32 * MiB, ++seed);
        {
                /* glibc's blocks start 16 bytes into a page */
                unsigned char *a = (unsigned char *)(((uintptr_t)p + 4 * MiB + PAGE - 1) & ~(PAGE - 1));
                check(madvise(a, 8 * MiB, MADV_DONTNEED) == 0, "madvise DONTNEED");
                check(all_zero(a, 8 * MiB), "DONTNEED range reads back zero");
                verify(p, 4 * MiB - PAGE, seed, "before the DONTNEED range");
                verify_part(p, 12 * MiB + PAGE, 20 * MiB - PAGE, seed, "after the DONTNEED range");
        }
        free(p);
}

/* ---- purging -------------------------------------------------------------------- */

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

/* What jemalloc does to the extents it keeps: MADV_FREE (lazy: the pages go
 * only under pressure, forced here with MADV_PAGEOUT, after which they read
 * back zero and fault again) and MADV_DONTNEED, on sparse and dense parts. */
static void purge_checks(void)
{
        const size_t n = 64 * MiB;
        size_t zero = 0, kept = 0;
        void *v = NULL;
        unsigned char *p;

        /* page-aligned with glibc too, for madvise */
        if (posix_memalign(&v, REGION, n) != 0)
                die("posix_memalign failed");
        p = v;
        check_block(p, n, "purge");
        /* sparse: 8 pages per region, below any promotion threshold */
        for (size_t r = 0; r < n / 2; r += REGION)
                for (size_t k = 0; k < 8; k++)
                        p[r + k * PAGE] = 7;
        fill(p + n / 2, n / 2, 900);            /* dense */
        check(madvise(p, n, MADV_FREE) == 0, "madvise MADV_FREE");
        check(madvise(p, n, MADV_PAGEOUT) == 0, "madvise MADV_PAGEOUT");
        for (size_t r = 0; r < n / 2; r += REGION)
                for (size_t k = 0; k < 8; k++)
                        *(p[r + k * PAGE] == 0 ? &zero : &kept) += 1;
        /* each page is either discarded (zero) or, if the kernel kept it, intact */
        check(zero + kept == n / 2 / REGION * 8, "MADV_FREE pages read back zero or intact");
        fill(p, n, 901);
        verify(p, n, 901, "refilled after MADV_FREE");
        check(madvise(p + n / 4, n / 2, MADV_DONTNEED) == 0, "madvise MADV_DONTNEED");
        check(all_zero(p + n / 4, n / 2), "MADV_DONTNEED part reads back zero");
        verify(p, n / 4, 901, "below the MADV_DONTNEED part");
        verify_part(p, 3 * n / 4, n / 4, 901, "above the MADV_DONTNEED part");
        fill(p, n, 902);
        verify(p, n, 902, "refilled after MADV_DONTNEED");
        free(p);
        printf("purged_zero=%zu\n", zero);
}

/* ---- threads ------------------------------------------------------------------- */

#define SLOTS 16

struct slot {
        void *p;
        size_t n;
        uint64_t seed;
};

static struct slot slots[SLOTS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long thread_iters;
static atomic_ulong thread_ops;

static void *thread_main(void *arg)
{
        unsigned seedr = (unsigned)(uintptr_t)arg * 7919u + 1;

        for (unsigned long i = 0; i < thread_iters; i++) {
                size_t n = (size_t)(rand_r(&seedr) % 48 + 1) * MiB + (size_t)(rand_r(&seedr) % 4096);
                uint64_t seed = ((uint64_t)(uintptr_t)arg << 32) | i;
                unsigned kind = (unsigned)rand_r(&seedr) % 3;
                void *p = NULL;

                if (kind == 0)
                        p = malloc(n);
                else if (kind == 1)
                        p = calloc(1, n);
                else if (posix_memalign(&p, 4096, n) != 0)
                        p = NULL;
                if (!p)
                        die("allocation of %zu failed", n);
                check_block(p, n, "thread");
                if (kind == 1)
                        check(all_zero(p, n), "thread calloc(%zu) is zero", n);
                fill(p, n, seed);
                if (rand_r(&seedr) % 2) {
                        size_t m = n + (size_t)(rand_r(&seedr) % 32) * MiB;
                        void *q = realloc(p, m);
                        if (!q)
                                die("realloc to %zu failed", m);
                        verify(q, n, seed, "thread realloc");
                        p = q;
                        fill(p, m, seed);
                        n = m;
                }
                verify(p, n, seed, "thread");

                /* swap with a slot: blocks are freed by whichever thread comes next */
                unsigned s = (unsigned)rand_r(&seedr) % SLOTS;
                pthread_mutex_lock(&slots_lock);
                struct slot old = slots[s];
                slots[s] = (struct slot) { .p = p, .n = n, .seed = seed };
                pthread_mutex_unlock(&slots_lock);
                if (old.p) {
                        verify(old.p, old.n, old.seed, "another thread's block");
                        free(old.p);
                }
                /* small allocations too: arenas of their own per thread */
                void *small = malloc((size_t)(rand_r(&seedr) % 100000) + 1);
                free(small);
                atomic_fetch_add(&thread_ops, 1);
        }
        return NULL;
}

static void mode_threads(int argc, char **argv)
{
        unsigned long n = argc > 2 ? strtoul(argv[2], NULL, 10) : 8;
        pthread_t t[64];

        thread_iters = argc > 3 ? strtoul(argv[3], NULL, 10) : 50;
        if (n == 0 || n > 64)
                die("threads: 1..64 threads");
        for (unsigned long i = 0; i < n; i++)
                if (pthread_create(&t[i], NULL, thread_main, (void *)(uintptr_t)(i + 1)) != 0)
                        die("pthread_create: %m");
        for (unsigned long i = 0; i < n; i++)
                pthread_join(t[i], NULL);
        for (unsigned s = 0; s < SLOTS; s++) {
                if (slots[s].p) {
                        verify(slots[s].p, slots[s].n, slots[s].seed, "left in a slot");
                        free(slots[s].p);
                }
        }
        printf("operations=%lu\n", (unsigned long)atomic_load(&thread_ops));
}

/* ---- remap ---------------------------------------------------------------------- */

/*
 * Blocks of 1 to 4 regions, written whole (the daemon promotes their regions)
 * and grown by realloc() at once, while those promotions are in flight: the
 * grown block must still be registered, with its data. A block the daemon had
 * handed to the kernel whole would be one unregistered mapping, which the
 * mremap() would move with no event: lost to the daemon.
 */
static void mode_remap(int argc, char **argv)
{
        unsigned long rounds = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;

        for (unsigned long i = 0; i < rounds; i++) {
                size_t n = (i % 4 + 1) * REGION;
                uint64_t seed = UINT64_C(0x7e000000) + i;
                unsigned char *p = malloc(n), *q;

                if (!p)
                        die("malloc(%zu): %m", n);
                fill(p, n, seed);
                q = realloc(p, n + REGION);
                if (!q)
                        die("realloc(%zu): %m", n + REGION);
                verify(q, n, seed, "remap: grown block");
                check_block(q, n + REGION, "remap: grown block");
                fill(q, n + REGION, seed + 1);
                verify(q, n + REGION, seed + 1, "remap: grown block refilled");
                free(q);
        }
}

/* ---- fork ---------------------------------------------------------------------- */

static void mode_fork(void)
{
        const size_t n = 256 * MiB;
        unsigned char *a = malloc(n), *b = malloc(n);
        int status;
        pid_t pid;

        check_block(a, n, "parent");
        fill(a, n, 101);
        fill(b, n, 102);

        pid = fork();
        if (pid < 0)
                die("fork: %m");
        if (pid == 0) {
                /* a client of its own under the shim: the inherited blocks
                 * are registered again in its mm, new ones are managed */
                check_block(a, n, "child: inherited block");
                verify(a, n, 101, "child: parent's block");
                fill(a, n, 201);                        /* copy-on-write */
                a = realloc(a, 2 * n);
                check(a != NULL, "child: realloc of an inherited block");
                verify(a, n, 201, "child: grown inherited block");
                fill(a, 2 * n, 202);
                verify(a, 2 * n, 202, "child: grown inherited block refilled");
                free(a);
                free(b);
                unsigned char *c = malloc(64 * MiB);    /* a new block: managed */
                check_block(c, 64 * MiB, "child: new block");
                fill(c, 64 * MiB, 203);
                verify(c, 64 * MiB, 203, "child: new block");
                free(c);
                c = realloc(NULL, 8 * MiB);
                fill(c, 8 * MiB, 204);
                verify(c, 8 * MiB, 204, "child: realloc(NULL)");
                free(c);
                fflush(stdout);
                _exit(atomic_load(&failures) ? 1 : 0);
        }
        printf("child_pid=%d\n", (int)pid);
        /* the parent goes on meanwhile */
        fill(b, n, 103);
        unsigned char *d = malloc(32 * MiB);
        check_block(d, 32 * MiB, "parent after fork");
        fill(d, 32 * MiB, 104);
        if (waitpid(pid, &status, 0) < 0)
                die("waitpid: %m");
        check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child passed its checks (status %#x)", status);
        verify(a, n, 101, "parent: own block after the child wrote its copy");
        verify(b, n, 103, "parent: block written during the child's life");
        verify(d, 32 * MiB, 104, "parent: block made after fork");
        a = realloc(a, 2 * n);
        verify(a, n, 101, "parent: grown after fork");
        free(a);
        free(b);
        free(d);
}

/* ---- exec, spawn --------------------------------------------------------------- */

static void mode_exec(void)
{
        char *argv[] = { (char *)self_path, "malloc", NULL };

        fflush(stdout);
        execve(self_path, argv, environ);
        die("execve %s: %m", self_path);
}

static int wait_child(pid_t pid, const char *what)
{
        int status;

        if (waitpid(pid, &status, 0) < 0)
                die("waitpid: %m");
        check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: child exited with status %#x", what, status);
        return status;
}

static void mode_spawn(void)
{
        char *argv[] = { (char *)self_path, "malloc", NULL };
        unsigned char *keep = malloc(16 * MiB);
        pid_t pid;
        int r;

        check_block(keep, 16 * MiB, "spawn parent");
        fill(keep, 16 * MiB, 301);
        fflush(stdout);
        r = posix_spawn(&pid, self_path, NULL, NULL, argv, environ);
        if (r != 0)
                die("posix_spawn: %s", strerror(r));
        wait_child(pid, "posix_spawn");

        pid = vfork();
        if (pid < 0)
                die("vfork: %m");
        if (pid == 0) {
                execve(self_path, argv, environ);
                _exit(127);
        }
        wait_child(pid, "vfork+exec");
        verify(keep, 16 * MiB, 301, "parent's block across spawns");
        free(keep);
        printf("children=2\n");
}

/* ---- signals ------------------------------------------------------------------- */

static atomic_ulong signals_seen;

static void on_signal(int sig)
{
        (void)sig;
        atomic_fetch_add_explicit(&signals_seen, 1, memory_order_relaxed);
}

static atomic_bool storm_stop;

static void *storm_main(void *arg)
{
        pthread_t target = *(pthread_t *)arg;

        while (!atomic_load(&storm_stop)) {
                pthread_kill(target, SIGUSR1);
                usleep(20);
        }
        return NULL;
}

static void mode_signals(void)
{
        struct sigaction sa = { .sa_handler = on_signal };
        struct itimerval it = { .it_interval = { 0, 50 }, .it_value = { 0, 50 } };
        pthread_t self = pthread_self(), storm;
        const size_t n = 128 * MiB;

        sigemptyset(&sa.sa_mask);
        /* no SA_RESTART: interrupted system calls must see EINTR, faults retry */
        if (sigaction(SIGALRM, &sa, NULL) < 0 || sigaction(SIGUSR1, &sa, NULL) < 0)
                die("sigaction: %m");
        if (pthread_create(&storm, NULL, storm_main, &self) != 0)
                die("pthread_create: %m");
        if (setitimer(ITIMER_REAL, &it, NULL) < 0)
                die("setitimer: %m");

        for (unsigned round = 0; round < 2; round++) {
                unsigned char *p = round % 2 ? calloc(1, n) : malloc(n);
                if (!p)
                        die("allocation failed");
                check_block(p, n, "signals");
                /* sparse first (faults served at 4 KiB), then dense */
                for (size_t off = 0; off < n; off += REGION)
                        p[off + 4096 * (off / REGION % 512)] = 1;
                fill(p, n, 400 + round);
                verify(p, n, 400 + round, "signals");
                unsigned char *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (m == MAP_FAILED)
                        die("mmap: %m");
                check_block(m, n, "signals mmap");
                fill(m, n, 500 + round);
                verify(m, n, 500 + round, "signals mmap");
                munmap(m, n);
                free(p);
        }
        it = (struct itimerval) {};
        setitimer(ITIMER_REAL, &it, NULL);
        atomic_store(&storm_stop, true);
        pthread_join(storm, NULL);
        printf("signals=%lu\n", (unsigned long)atomic_load(&signals_seen));
        check(atomic_load(&signals_seen) > 100, "signals arrived during the faults (%lu)",
              (unsigned long)atomic_load(&signals_seen));
}

/* ---- closefds ------------------------------------------------------------------ */

static void mode_closefds(void)
{
        int pipes[300][2];
        unsigned np = 0;

        /* what daemons and sandboxes do first: close everything inherited */
        if (syscall(SYS_close_range, 3u, ~0u, 0u) < 0)
                for (int fd = 3; fd < 65536; fd++)
                        close(fd);
        /* and open their own, reusing the numbers (the shim's socket was at 100+) */
        for (np = 0; np < 300; np++)
                if (pipe2(pipes[np], O_NONBLOCK | O_CLOEXEC) < 0)
                        break;
        check(np >= 100, "opened %u pipes", np);

        for (unsigned round = 0; round < 3; round++) {
                size_t n = (64 + 64 * round) * MiB;
                unsigned char *p = malloc(n);
                unsigned char *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (!p || m == MAP_FAILED)
                        die("allocation failed");
                fill(p, n, 600 + round);
                fill(m, n, 700 + round);
                p = realloc(p, 2 * n);
                verify(p, n, 600 + round, "closefds malloc");
                verify(m, n, 700 + round, "closefds mmap");
                free(p);
                munmap(m, n);
        }

        unsigned dirty = 0;
        for (unsigned i = 0; i < np; i++) {
                char c;
                if (read(pipes[i][0], &c, 1) != -1 || errno != EAGAIN)
                        dirty++;
        }
        check(dirty == 0, "nothing was written to the fds that replaced the shim's socket (%u pipes)", dirty);
        printf("pipes=%u\n", np);
}

/* ---- churn ------------------------------------------------------------------------ */

/* N rounds of the calls the shim interposes: its cost per call is measured
 * by counting system calls (tests/programs/shim_absent.py). */
static void mode_churn(int argc, char **argv)
{
        unsigned long n = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;

        for (unsigned long i = 0; i < n; i++) {
                unsigned char *m = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (m == MAP_FAILED)
                        die("mmap: %m");
                m[i % (4 * MiB)] = 1;
                m = mremap(m, 4 * MiB, 8 * MiB, MREMAP_MAYMOVE);
                if (m == MAP_FAILED)
                        die("mremap: %m");
                munmap(m, 8 * MiB);

                unsigned char *p = malloc(4 * MiB), *q = calloc(1, 3 * MiB), *r = malloc(100 + i % 1000);
                if (!p || !q || !r)
                        die("malloc failed");
                p[i % (4 * MiB)] = 1;
                p = realloc(p, 6 * MiB);
                if (!p)
                        die("realloc failed");
                check(malloc_usable_size(p) >= 6 * MiB, "usable size");
                free(p);
                free(q);
                free(r);
        }
        printf("rounds=%lu\n", n);
}

/* ---- protnone ------------------------------------------------------------------ */

static void mode_protnone(void)
{
        const size_t n = 64 * MiB;
        unsigned char *h;

        /* like glibc's new_heap(): reserve, then open it as it grows */
        h = mmap(NULL, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (h == MAP_FAILED)
                die("mmap PROT_NONE: %m");
        check_block(h, n, "PROT_NONE reservation");
        for (size_t open = 132 * 1024; open <= n; open *= 2) {
                if (mprotect(h, open, PROT_READ | PROT_WRITE) < 0)
                        die("mprotect %zu: %m", open);
                fill(h, open, 800);
                verify(h, open, 800, "opened part of the reservation");
        }
        if (mprotect(h, n, PROT_READ | PROT_WRITE) < 0)
                die("mprotect: %m");
        fill(h, n, 801);

        /* shrink_heap(): MAP_FIXED PROT_NONE over the top, then open it again */
        if (mmap(h + n / 2, n / 2, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) !=
            h + n / 2)
                die("mmap MAP_FIXED: %m");
        if (mprotect(h + n / 2, n / 2, PROT_READ | PROT_WRITE) < 0)
                die("mprotect: %m");
        check(all_zero(h + n / 2, n / 2), "top of the heap replaced by MAP_FIXED reads back zero");
        verify(h, n / 2, 801, "bottom of the heap kept");
        fill(h + n / 2, n / 2, 802);
        /* and the other way: MADV_DONTNEED */
        check(madvise(h + n / 4, n / 4, MADV_DONTNEED) == 0, "madvise DONTNEED");
        check(all_zero(h + n / 4, n / 4), "DONTNEED part reads back zero");
        fill(h + n / 4, n / 4, 803);
        verify(h + n / 4, n / 4, 803, "refilled after DONTNEED");
        verify(h, n / 4, 801, "untouched part kept");
        munmap(h, n);
}

/* ---- split ------------------------------------------------------------------------ */

/* How many mappings [p, p+len) is made of (0 if any of it is unmapped). */
static int count_vmas(const void *p, size_t len)
{
        uintptr_t a = (uintptr_t)p, end = a + len, next = a;
        char line[512];
        int n = 0;
        FILE *f = fopen("/proc/self/maps", "re");

        if (!f)
                die("open /proc/self/maps: %m");
        while (fgets(line, sizeof(line), f)) {
                uintptr_t s, e;
                if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &s, &e) != 2 || e <= next || s >= end)
                        continue;
                if (s > next)
                        break;
                n++;
                next = e;
        }
        fclose(f);
        return next >= end ? n : 0;
}

/*
 * A block made of two mappings the kernel will not merge (they got their
 * first pages apart, so their anon_vmas differ): what a region the daemon
 * split off and could not register again leaves behind. Under the shim,
 * mremap() grows, moves and shrinks it as if it were one mapping; without it
 * the kernel refuses (EFAULT) and leaves it as it was.
 */
static void mode_split(void)
{
        const size_t a_len = 16 * MiB, b_len = 8 * MiB, len = a_len + b_len;
        unsigned char *a, *b, *p;

        a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        b = mmap(NULL, b_len + REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (a == MAP_FAILED || b == MAP_FAILED)
                die("mmap: %m");
        check_block(a, len, "first half");
        fill(a, a_len, 900);
        munmap(a + a_len, b_len);
        /* b's first page comes while it is a mapping of its own */
        fill(b, b_len, 901);
        munmap(b + b_len, REGION);
        if (mremap(b, b_len, b_len, MREMAP_MAYMOVE | MREMAP_FIXED, a + a_len) != a + a_len)
                die("mremap the second half next to the first: %m");
        verify(a, a_len, 900, "split: first half");
        verify(a + a_len, b_len, 901, "split: second half");
        int n = count_vmas(a, len);
        if (n != 2)
                die("the two halves are %d mappings, not 2: this kernel merges them, nothing to test", n);

        p = mremap(a, len, len + 8 * MiB, MREMAP_MAYMOVE);
        if (expect != EXPECT_MANAGED && expect != EXPECT_REGISTERED) {
                check(p == MAP_FAILED && errno == EFAULT, "without the shim, mremap of two mappings fails "
                      "with EFAULT (%p, %s)", (void *)p, strerror(errno));
                if (p == MAP_FAILED) {
                        verify(a, a_len, 900, "split, after the EFAULT: first half");
                        verify(a + a_len, b_len, 901, "split, after the EFAULT: second half");
                        munmap(a, len);
                }
                return;
        }
        check(p != MAP_FAILED, "mremap grow of a block made of two mappings: %s", strerror(errno));
        if (p == MAP_FAILED)
                return;
        check_block(p, len + 8 * MiB, "split, grown");
        verify(p, a_len, 900, "split, grown: first half");
        verify(p + a_len, b_len, 901, "split, grown: second half");
        check(all_zero(p + len, 8 * MiB), "split, grown: the new tail reads zero");
        fill(p + len, 8 * MiB, 902);

        /* move it somewhere else, as it is */
        unsigned char *to = mmap(NULL, len + 8 * MiB + REGION, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (to == MAP_FAILED)
                die("mmap: %m");
        unsigned char *q = mremap(p, len + 8 * MiB, len + 8 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED, to);
        check(q == to, "mremap move (MREMAP_FIXED) of a block made of several mappings: %s", strerror(errno));
        if (q != to)
                return;
        munmap(to + len + 8 * MiB, REGION);
        verify(q, a_len, 900, "split, moved: first half");
        verify(q + a_len, b_len, 901, "split, moved: second half");
        verify_part(q + len, 0, 8 * MiB, 902, "split, moved: grown tail");

        /* shrink it into its first mapping */
        unsigned char *r = mremap(q, len + 8 * MiB, a_len / 2, 0);
        check(r == q, "mremap shrink of a block made of several mappings: %s", strerror(errno));
        if (r == q) {
                verify(r, a_len / 2, 900, "split, shrunk");
                check(count_vmas(r + a_len / 2, REGION) == 0, "split, shrunk: the rest is unmapped");
                munmap(r, a_len / 2);
        }
}

int main(int argc, char **argv)
{
        const char *e = getenv("HP_EXPECT");
        const char *mode;

        /* closefds must come before anything else opens an fd */
        if (argc >= 2 && strcmp(argv[1], "closefds") == 0) {
                printf("pid=%d\n", (int)getpid());
                fflush(stdout);
                mode_closefds();
                goto out;
        }
        self_path = "/proc/self/exe";
        if (e && strcmp(e, "managed") == 0)
                expect = EXPECT_MANAGED;
        else if (e && strcmp(e, "registered") == 0)
                expect = EXPECT_REGISTERED;
        else if (e && strcmp(e, "unmanaged") == 0)
                expect = EXPECT_UNMANAGED;
        if (argc < 2)
                die("usage: shim-check malloc|threads N ITER|remap N|fork|exec|spawn|signals|closefds|protnone|split|churn N");
        mode = argv[1];
        printf("pid=%d\n", (int)getpid());
        print_malloc_libs();
        fflush(stdout);

        if (strcmp(mode, "malloc") == 0)
                mode_malloc();
        else if (strcmp(mode, "threads") == 0)
                mode_threads(argc, argv);
        else if (strcmp(mode, "remap") == 0)
                mode_remap(argc, argv);
        else if (strcmp(mode, "fork") == 0)
                mode_fork();
        else if (strcmp(mode, "exec") == 0)
                mode_exec();
        else if (strcmp(mode, "spawn") == 0)
                mode_spawn();
        else if (strcmp(mode, "signals") == 0)
                mode_signals();
        else if (strcmp(mode, "protnone") == 0) {
                mode_protnone();
                purge_checks();
        }
        else if (strcmp(mode, "split") == 0)
                mode_split();
        else if (strcmp(mode, "churn") == 0)
                mode_churn(argc, argv);
        else
                die("unknown mode %s", mode);
out:
        printf("blocks_seen=%lu\nblocks_registered=%lu\nmismatches=%lu\n", (unsigned long)atomic_load(&blocks_seen),
               (unsigned long)atomic_load(&blocks_registered), (unsigned long)atomic_load(&failures));
        return atomic_load(&failures) ? 1 : 0;
}
