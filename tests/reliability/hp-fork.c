/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hp-fork.c: an unmodified-looking program (plain mmap, no hugepaged
 * library) whose processes fork without exec, for the fork tests:
 *
 *   hp-fork prefork WORKERS SIZE
 *       A pre-fork server: the parent maps 64 MiB and writes 32 pages of
 *       each 2 MiB region (below the daemon's threshold: the holes stay),
 *       then forks WORKERS workers without exec. Each worker checks the
 *       parent's pages, fills the holes of that inherited mapping, maps SIZE
 *       and writes every page, waits (30 s at most) until 90% of the new
 *       mapping is AnonHugePages, and verifies every page of both. Prints
 *       one line per worker: worker= pid= huge_kb= size_kb= inherited_huge_kb=
 *       mismatches=, then the parent's own mismatches= (its pages must be
 *       untouched by the workers).
 *
 *   hp-fork torture THREADS FORKS
 *       THREADS threads rewrite the 2 MiB regions of a 128 MiB mapping,
 *       round after round (dense: promoted at once; every 4th page: promoted
 *       at the threshold; every 32nd page: stays small), each region verified
 *       before it is dropped (MADV_DONTNEED) and written again, while another
 *       thread forks FORKS times (4 children at a time). Each child checks a sample of the regions
 *       that were complete at the fork (pages written hold their pattern,
 *       the others read zero), writes its own pattern into some of them and
 *       into a new mapping, reads it back and exits. At the end the parent
 *       verifies every region: its data unchanged by the children. Prints
 *       forked=N progress lines, then forks=, child_failures=, rounds=,
 *       mismatches=.
 *
 *   hp-fork bomb SECONDS
 *       A fork bomb for SECONDS: every process forks as fast as it can (a
 *       child forks on in turn, for 0.2 s at most), each writes and checks 4 MiB of its own,
 *       and a fork that fails (the ulimit -u cap) is retried 1 ms later.
 *       Every process exits when the time is up. Prints forks=,
 *       fork_failures= and mismatches= (all processes).
 *
 *   hp-fork gate FORKS FILE
 *       The parent writes 8 MiB, prints ready=1, waits until it can read a
 *       line from FILE (a FIFO the test writes once it has stopped the
 *       daemon), then forks FORKS children one after the other; each checks
 *       the parent's data, writes its own copy and exits. Prints forks=,
 *       child_failures= and mismatches=.
 *
 * Every page written holds a pattern of (region, round, page, word); pages
 * never written must read zero. Exit status: 0 all data intact, 1 a
 * mismatch or a child that failed, 2 usage or system error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096ul
#define MiB (1ul << 20)
#define REGION (2 * MiB)
#define REGION_PAGES 512u
#define WORDS (PAGE / 8)

static void die(const char *what)
{
        fprintf(stderr, "hp-fork: %s: %s\n", what, strerror(errno));
        exit(2);
}

static uint64_t mix(uint64_t x)
{
        x ^= x >> 30;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 27;
        x *= 0x94D049BB133111EBull;
        return x ^ (x >> 31);
}

static uint64_t word_of(uint64_t tag, uint64_t region, uint64_t round, uint64_t page, uint64_t w)
{
        return mix(tag ^ (region << 40) ^ (round << 24) ^ (page << 10) ^ w) | 1;
}

static void page_write(uint64_t *p, uint64_t tag, uint64_t region, uint64_t round, uint64_t page)
{
        for (uint64_t w = 0; w < WORDS; w++)
                p[w] = word_of(tag, region, round, page, w);
}

/* 0 if page p holds its pattern (or zeros when !written), else 1. */
static unsigned page_check(const uint64_t *p, bool written, uint64_t tag, uint64_t region, uint64_t round,
                           uint64_t page)
{
        for (uint64_t w = 0; w < WORDS; w++)
                if (p[w] != (written ? word_of(tag, region, round, page, w) : 0))
                        return 1;
        return 0;
}

static void *map_aligned(size_t len)
{
        char *p = mmap(NULL, len + REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                die("mmap");
        uintptr_t a = ((uintptr_t)p + REGION - 1) & ~(uintptr_t)(REGION - 1);
        if (a > (uintptr_t)p)
                munmap(p, a - (uintptr_t)p);
        munmap((char *)a + len, (uintptr_t)p + REGION - a);
        return (void *)a;
}

/* AnonHugePages (KiB) of the mappings inside [start, start+len). */
static unsigned long huge_kb(const void *start, size_t len)
{
        uintptr_t lo = (uintptr_t)start, hi = lo + len;
        unsigned long total = 0, kb;
        bool inside = false;
        char line[512];
        FILE *f = fopen("/proc/self/smaps", "re");

        if (!f)
                die("/proc/self/smaps");
        while (fgets(line, sizeof(line), f)) {
                uintptr_t a, b;
                if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' '))
                        inside = a >= lo && b <= hi;
                else if (inside && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
                        total += kb;
        }
        fclose(f);
        return total;
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- prefork ---------------------------------------------------------------- */

#define PF_SHARED (64 * MiB)
#define PF_PARENT_PAGES 32u     /* per region, every 16th page */
#define PF_TAG_PARENT 0x5041u
#define PF_TAG_WORKER 0x574bu

/* 1 page in 16, irregularly: no stream the daemon would promote at once. */
static bool pf_parent_page(uint64_t page)
{
        return mix(page + 7) % (REGION_PAGES / PF_PARENT_PAGES) == 0;
}

static int prefork_worker(unsigned k, char *shared, size_t size)
{
        unsigned long mism = 0;
        uint64_t npages = PF_SHARED / PAGE;

        /* The parent's data, then the holes of the inherited mapping. */
        for (uint64_t i = 0; i < npages; i++)
                mism += page_check((uint64_t *)(shared + i * PAGE), pf_parent_page(i % REGION_PAGES), PF_TAG_PARENT,
                                   i / REGION_PAGES, 0, i % REGION_PAGES);
        for (uint64_t i = 0; i < npages; i++)
                if (!pf_parent_page(i % REGION_PAGES))
                        page_write((uint64_t *)(shared + i * PAGE), PF_TAG_WORKER + k, i / REGION_PAGES, 1,
                                   i % REGION_PAGES);

        char *mem = map_aligned(size);
        for (uint64_t i = 0; i < size / PAGE; i++)
                page_write((uint64_t *)(mem + i * PAGE), PF_TAG_WORKER + k, i / REGION_PAGES, 2, i % REGION_PAGES);

        /* A bound for correctness, not a performance figure. */
        unsigned long hkb = 0;
        for (double end = now_s() + 30; (hkb = huge_kb(mem, size)) < size / 1024 * 9 / 10 && now_s() < end;)
                usleep(50000);
        unsigned long inherited_hkb = huge_kb(shared, PF_SHARED);

        for (uint64_t i = 0; i < size / PAGE; i++)
                mism += page_check((uint64_t *)(mem + i * PAGE), true, PF_TAG_WORKER + k, i / REGION_PAGES, 2,
                                   i % REGION_PAGES);
        for (uint64_t i = 0; i < npages; i++) {
                bool parent = pf_parent_page(i % REGION_PAGES);
                mism += page_check((uint64_t *)(shared + i * PAGE), true, parent ? PF_TAG_PARENT : PF_TAG_WORKER + k,
                                   i / REGION_PAGES, parent ? 0 : 1, i % REGION_PAGES);
        }
        printf("worker=%u pid=%d huge_kb=%lu size_kb=%zu inherited_huge_kb=%lu inherited_kb=%lu mismatches=%lu\n", k,
               (int)getpid(), hkb, size / 1024, inherited_hkb, PF_SHARED / 1024, mism);
        fflush(stdout);
        return mism ? 1 : 0;
}

static int prefork(unsigned workers, size_t size)
{
        char *shared = map_aligned(PF_SHARED);
        uint64_t npages = PF_SHARED / PAGE;
        unsigned long mism = 0;
        unsigned failed = 0;
        pid_t pids[64];

        for (uint64_t i = 0; i < npages; i++)
                if (pf_parent_page(i % REGION_PAGES))
                        page_write((uint64_t *)(shared + i * PAGE), PF_TAG_PARENT, i / REGION_PAGES, 0,
                                   i % REGION_PAGES);
        printf("pid=%d\n", (int)getpid());
        fflush(stdout);

        for (unsigned k = 0; k < workers; k++) {
                pids[k] = fork();
                if (pids[k] < 0)
                        die("fork");
                if (pids[k] == 0)
                        _exit(prefork_worker(k, shared, size));
        }
        for (unsigned k = 0; k < workers; k++) {
                int st;
                if (waitpid(pids[k], &st, 0) < 0)
                        die("waitpid");
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                        fprintf(stderr, "hp-fork: worker %u (pid %d) failed (status %#x)\n", k, (int)pids[k], st);
                        failed++;
                }
        }
        for (uint64_t i = 0; i < npages; i++)
                mism += page_check((uint64_t *)(shared + i * PAGE), pf_parent_page(i % REGION_PAGES), PF_TAG_PARENT,
                                   i / REGION_PAGES, 0, i % REGION_PAGES);
        printf("workers=%u\nworkers_failed=%u\nmismatches=%lu\n", workers, failed, mism);
        return mism || failed ? 1 : 0;
}

/* ---- torture ---------------------------------------------------------------- */

#define T_SIZE (128 * MiB)
#define T_REGIONS (T_SIZE / REGION)
#define T_TAG 0x544fu
#define T_TAG_CHILD 0x4348u
#define T_INFLIGHT 4u

static char *t_mem;
static _Atomic uint32_t t_round[T_REGIONS];     /* round of the data in the region; 0: being written */
static atomic_flag t_busy[T_REGIONS];
static atomic_uint t_next;
static atomic_bool t_stop;
static atomic_ulong t_mismatches, t_rounds;

/* Which pages of region r hold data in round n: every 1st, 4th or 32nd. */
static unsigned t_stride(uint64_t r, uint32_t n)
{
        static const unsigned strides[3] = { 1, 4, 32 };
        return strides[(r + n) % 3];
}

static unsigned long t_check_region(uint64_t r, uint32_t n, uint64_t pages_step)
{
        unsigned long bad = 0;
        unsigned s = t_stride(r, n);
        char *base = t_mem + r * REGION;

        for (uint64_t p = 0; p < REGION_PAGES; p += pages_step)
                bad += page_check((uint64_t *)(base + p * PAGE), p % s == 0, T_TAG, r, n, p);
        return bad;
}

static void *t_thread(void *arg)
{
        (void)arg;
        while (!atomic_load(&t_stop)) {
                uint64_t r = atomic_fetch_add(&t_next, 1) % T_REGIONS;
                if (atomic_flag_test_and_set(&t_busy[r]))
                        continue;
                uint32_t n = atomic_load_explicit(&t_round[r], memory_order_relaxed), next = n + 1;
                char *base = t_mem + r * REGION;
                if (n) {
                        unsigned long bad = t_check_region(r, n, 1);
                        if (bad) {
                                fprintf(stderr, "hp-fork: region %" PRIu64 " round %u: %lu pages changed\n", r, n, bad);
                                atomic_fetch_add(&t_mismatches, bad);
                        }
                        atomic_store_explicit(&t_round[r], 0, memory_order_release);
                        if (madvise(base, REGION, MADV_DONTNEED) < 0)
                                die("madvise");
                }
                unsigned s = t_stride(r, next);
                for (uint64_t p = 0; p < REGION_PAGES; p += s)
                        page_write((uint64_t *)(base + p * PAGE), T_TAG, r, next, p);
                atomic_store_explicit(&t_round[r], next, memory_order_release);
                atomic_fetch_add(&t_rounds, 1);
                atomic_flag_clear(&t_busy[r]);
        }
        return NULL;
}

/* The child of fork i: the regions complete at the fork are the parent's;
 * check a sample, write its own over some, read them back. */
static int t_child(unsigned i)
{
        uint64_t rnd = mix(i + 1);
        unsigned long bad = 0;

        for (unsigned k = 0; k < 8; k++) {
                uint64_t r = (rnd = mix(rnd)) % T_REGIONS;
                uint32_t n = atomic_load_explicit(&t_round[r], memory_order_acquire);
                if (n)
                        bad += t_check_region(r, n, 3 + (rnd >> 32) % 8);
        }
        for (unsigned k = 0; k < 4; k++) {
                uint64_t r = (rnd = mix(rnd)) % T_REGIONS;
                char *page = t_mem + r * REGION + ((rnd >> 20) % REGION_PAGES) * PAGE;
                page_write((uint64_t *)page, T_TAG_CHILD + i, r, 0, 0);
                bad += page_check((uint64_t *)page, true, T_TAG_CHILD + i, r, 0, 0);
        }
        char *own = map_aligned(2 * MiB);
        for (uint64_t p = 0; p < 2 * MiB / PAGE; p += 3)
                page_write((uint64_t *)(own + p * PAGE), T_TAG_CHILD + i, 1, 1, p);
        for (uint64_t p = 0; p < 2 * MiB / PAGE; p++)
                bad += page_check((uint64_t *)(own + p * PAGE), p % 3 == 0, T_TAG_CHILD + i, 1, 1, p);
        if (bad)
                fprintf(stderr, "hp-fork: child %u (pid %d): %lu pages differ\n", i, (int)getpid(), bad);
        return bad ? 1 : 0;
}

static int torture(unsigned nthreads, unsigned forks)
{
        pthread_t th[64];
        unsigned failures = 0;

        t_mem = map_aligned(T_SIZE);
        printf("pid=%d\n", (int)getpid());
        fflush(stdout);
        for (unsigned t = 0; t < nthreads; t++)
                if (pthread_create(&th[t], NULL, t_thread, NULL) != 0)
                        die("pthread_create");
        /* Let the threads have some regions complete before the first fork. */
        while (atomic_load(&t_rounds) < T_REGIONS / 4)
                usleep(1000);

        /* Up to T_INFLIGHT children at a time; each is reaped in turn. */
        pid_t inflight[T_INFLIGHT];
        unsigned reaped = 0;
        for (unsigned i = 0; i < forks || reaped < forks; ) {
                if (i < forks && i - reaped < T_INFLIGHT) {
                        pid_t pid = fork();
                        if (pid < 0)
                                die("fork");
                        if (pid == 0)
                                _exit(t_child(i));
                        inflight[i % T_INFLIGHT] = pid;
                        i++;
                        continue;
                }
                int st;
                pid_t pid = inflight[reaped % T_INFLIGHT];
                if (waitpid(pid, &st, 0) < 0)
                        die("waitpid");
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                        fprintf(stderr, "hp-fork: child %u (pid %d) failed (status %#x)\n", reaped, (int)pid, st);
                        failures++;
                }
                reaped++;
                if (reaped % 50 == 0) {
                        printf("forked=%u\n", reaped);
                        fflush(stdout);
                }
        }
        atomic_store(&t_stop, true);
        for (unsigned t = 0; t < nthreads; t++)
                pthread_join(th[t], NULL);
        for (uint64_t r = 0; r < T_REGIONS; r++) {
                uint32_t n = atomic_load(&t_round[r]);
                if (n)
                        atomic_fetch_add(&t_mismatches, t_check_region(r, n, 1));
        }
        unsigned long mism = atomic_load(&t_mismatches);
        printf("forks=%u\nchild_failures=%u\nrounds=%lu\nmismatches=%lu\n", forks, failures, atomic_load(&t_rounds),
               mism);
        return mism || failures ? 1 : 0;
}

/* ---- gate ------------------------------------------------------------------ */

static int gate(unsigned forks, const char *path)
{
        const size_t len = 8 * MiB;
        char *mem = map_aligned(len), line[16];
        unsigned long bad = 0;
        unsigned failures = 0;

        for (uint64_t p = 0; p < len / PAGE; p++)
                page_write((uint64_t *)(mem + p * PAGE), 0x6a7e, 0, 1, p);
        printf("pid=%d\nready=1\n", (int)getpid());
        fflush(stdout);
        FILE *f = fopen(path, "re");
        if (!f || !fgets(line, sizeof(line), f))
                die(path);
        fclose(f);
        for (unsigned i = 0; i < forks; i++) {
                pid_t pid = fork();
                if (pid < 0)
                        die("fork");
                if (pid == 0) {
                        unsigned long b = 0;
                        for (uint64_t p = 0; p < len / PAGE; p++)
                                b += page_check((uint64_t *)(mem + p * PAGE), true, 0x6a7e, 0, 1, p);
                        for (uint64_t p = 0; p < len / PAGE; p += 5)
                                page_write((uint64_t *)(mem + p * PAGE), 0x6a7f, i, 2, p);
                        for (uint64_t p = 0; p < len / PAGE; p += 5)
                                b += page_check((uint64_t *)(mem + p * PAGE), true, 0x6a7f, i, 2, p);
                        _exit(b ? 1 : 0);
                }
                int st;
                if (waitpid(pid, &st, 0) < 0)
                        die("waitpid");
                failures += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
        }
        for (uint64_t p = 0; p < len / PAGE; p++)
                bad += page_check((uint64_t *)(mem + p * PAGE), true, 0x6a7e, 0, 1, p);
        printf("forks=%u\nchild_failures=%u\nmismatches=%lu\n", forks, failures, bad);
        return bad || failures ? 1 : 0;
}

/* ---- bomb ------------------------------------------------------------------ */

struct bomb_counts {
        atomic_ulong forks, failures, mismatches;
};

static int bomb(unsigned seconds)
{
        struct bomb_counts *bc = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        pid_t top = getpid();
        double end = now_s() + seconds;

        if (bc == MAP_FAILED)
                die("mmap");
        printf("pid=%d\n", (int)top);
        fflush(stdout);
        while (now_s() < end) {
                pid_t pid = fork();
                if (pid < 0) {
                        atomic_fetch_add(&bc->failures, 1);
                        usleep(1000);
                        continue;
                }
                if (pid > 0) {
                        atomic_fetch_add(&bc->forks, 1);
                        while (waitpid(-1, NULL, WNOHANG) > 0)
                                ;
                        continue;
                }
                /* the child: some memory of its own, then fork on for a
                 * while (processes come and go: the daemon sees churn) */
                if (now_s() + 0.2 < end)
                        end = now_s() + 0.2;
                char *mem = map_aligned(4 * MiB);
                unsigned long bad = 0;
                for (uint64_t p = 0; p < 4 * MiB / PAGE; p += 2)
                        page_write((uint64_t *)(mem + p * PAGE), 0xb0b, (uint64_t)getpid(), 1, p);
                for (uint64_t p = 0; p < 4 * MiB / PAGE; p++)
                        bad += page_check((uint64_t *)(mem + p * PAGE), p % 2 == 0, 0xb0b, (uint64_t)getpid(), 1, p);
                munmap(mem, 4 * MiB);
                if (bad)
                        atomic_fetch_add(&bc->mismatches, bad);
        }
        if (getpid() != top)
                _exit(0);
        while (wait(NULL) > 0 || errno == EINTR)
                ;
        /* grandchildren reparented elsewhere may still be ending: wait for
         * their counts to settle (they only ever stop adding) */
        usleep(200000);
        printf("forks=%lu\nfork_failures=%lu\nmismatches=%lu\n", atomic_load(&bc->forks),
               atomic_load(&bc->failures), atomic_load(&bc->mismatches));
        return atomic_load(&bc->mismatches) ? 1 : 0;
}

int main(int argc, char **argv)
{
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (argc == 4 && strcmp(argv[1], "prefork") == 0) {
                unsigned workers = (unsigned)strtoul(argv[2], NULL, 0);
                size_t size = (size_t)strtoull(argv[3], NULL, 0) * MiB;
                if (workers < 1 || workers > 64 || size < REGION || size % REGION)
                        goto usage;
                return prefork(workers, size);
        }
        if (argc == 4 && strcmp(argv[1], "torture") == 0) {
                unsigned threads = (unsigned)strtoul(argv[2], NULL, 0), forks = (unsigned)strtoul(argv[3], NULL, 0);
                if (threads < 1 || threads > 64 || forks < 1)
                        goto usage;
                return torture(threads, forks);
        }
        if (argc == 4 && strcmp(argv[1], "gate") == 0) {
                unsigned forks = (unsigned)strtoul(argv[2], NULL, 0);
                if (forks < 1 || forks > 1000)
                        goto usage;
                return gate(forks, argv[3]);
        }
        if (argc == 3 && strcmp(argv[1], "bomb") == 0) {
                unsigned seconds = (unsigned)strtoul(argv[2], NULL, 0);
                if (seconds < 1 || seconds > 600)
                        goto usage;
                return bomb(seconds);
        }
usage:
        fprintf(stderr, "usage: hp-fork prefork WORKERS SIZE_MIB | hp-fork torture THREADS FORKS | "
                "hp-fork gate FORKS FIFO | hp-fork bomb SECONDS\n");
        return 2;
}
