/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hp-chaos.c: an unmodified-looking program (plain mmap, no hugepaged
 * library) whose threads keep the daemon busy with everything a managed
 * mapping can go through, for the crash tests in tests/reliability:
 *
 *   hp-chaos THREADS SECONDS [SEED]
 *
 * Each thread, until the time is up: maps 4..18 MiB, writes it densely
 * (promoted at once or at the threshold), sparsely (stays small) or half
 * and half, then does one of: grow it with mremap (it may move), move it to
 * another address, shrink it, drop part of it with MADV_DONTNEED, or unmap a
 * piece out of its middle; then verifies every page and unmaps it. Every
 * page written holds a pattern of (seed, thread, round, page), and every
 * page never written (or dropped) must read zero: a page served twice, lost
 * or moved wrongly is counted, not only crashes.
 *
 * Prints pid= first, then threads=, iterations=, ops=, mismatches=.
 * Exit status: 0 all data intact, 1 mismatches, 2 usage or system error.
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
#include <time.h>
#include <unistd.h>

#define PAGE 4096ul
#define MiB (1ul << 20)
#define REGION (2 * MiB)
#define WORDS (PAGE / 8)
#define GOLDEN 0x9E3779B97F4A7C15ull

static atomic_ulong mismatches, iterations, op_count[5];
static double end_time;
static uint64_t seed = 1;

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t mix(uint64_t x)
{
        x ^= x >> 30;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 27;
        x *= 0x94D049BB133111EBull;
        return x ^ (x >> 31);
}

static void fail(const char *what)
{
        perror(what);
        exit(2);
}

/* Like fail(), for a call on [p, p+len): also prints the mappings there (a
 * mremap() fails with EFAULT when the range is not one mapping). */
static void fail_range(const char *what, const char *p, size_t len)
{
        int e = errno;
        char line[512];
        bool inside = false;
        FILE *f = fopen("/proc/self/smaps", "re");

        fprintf(stderr, "%s [%p, %p):\n", what, (const void *)p, (const void *)(p + len));
        while (f && fgets(line, sizeof(line), f)) {
                unsigned long lo, hi;
                bool header = sscanf(line, "%lx-%lx ", &lo, &hi) == 2;
                if (header)
                        inside = lo < (uintptr_t)p + len && hi > (uintptr_t)p;
                if (inside && (header || !strncmp(line, "VmFlags:", 8) ||
                               !strncmp(line, "AnonHugePages:", 14) || !strncmp(line, "Rss:", 4)))
                        fprintf(stderr, "  %s", line);
        }
        if (f)
                fclose(f);
        errno = e;
        fail(what);
}

/* A buffer and what each of its pages must hold: 0 = zeros, else the key. */
struct buf {
        char *p;
        size_t pages;
        uint64_t *key;
};

static void page_write(char *p, uint64_t key)
{
        uint64_t *w = (uint64_t *)p;
        for (size_t i = 0; i < WORDS; i++)
                w[i] = key + i * GOLDEN;
}

static void buf_write(struct buf *b, size_t first, size_t n, uint64_t base)
{
        for (size_t i = first; i < first + n; i++) {
                b->key[i] = mix(base + i) | 1;
                page_write(b->p + i * PAGE, b->key[i]);
        }
}

static void buf_verify(const struct buf *b, size_t first, size_t n, const char *when)
{
        unsigned long bad = 0;
        for (size_t i = first; i < first + n; i++) {
                const uint64_t *w = (const uint64_t *)(b->p + i * PAGE);
                uint64_t k = b->key[i];
                for (size_t j = 0; j < WORDS; j++)
                        if (w[j] != (k ? k + j * GOLDEN : 0)) {
                                if (bad++ < 3)
                                        fprintf(stderr, "MISMATCH after %s: page %zu of %zu word %zu: %#" PRIx64
                                                " expected %#" PRIx64 "\n", when, i, b->pages, j, w[j],
                                                (uint64_t)(k ? k + j * GOLDEN : 0));
                                break;
                        }
        }
        mismatches += bad;
}

static void *map(size_t len)
{
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                fail("mmap");
        return p;
}

static void *thread_main(void *arg)
{
        uint64_t t = (uintptr_t)arg, round = 0, r = mix(seed ^ (t << 32));

        while (now_s() < end_time) {
                r = mix(r + GOLDEN);
                uint64_t base = mix(seed + (t << 40) + (round << 20));
                size_t pages = (2 + r % 8) * (REGION / PAGE) + (r >> 8) % 5;
                struct buf b = { .p = map(pages * PAGE), .pages = pages, .key = calloc(pages + 4096, 8) };
                if (!b.key)
                        fail("calloc");

                switch ((r >> 16) % 3) {
                case 0:         /* dense */
                        buf_write(&b, 0, pages, base);
                        break;
                case 1:         /* sparse: one page in 16 */
                        for (size_t i = (r >> 20) % 16; i < pages; i += 16)
                                buf_write(&b, i, 1, base);
                        break;
                default:        /* dense first half */
                        buf_write(&b, 0, pages / 2, base);
                        for (size_t i = pages / 2; i < pages; i += 7)
                                buf_write(&b, i, 1, base);
                }
                buf_verify(&b, 0, pages, "write");

                unsigned op = (unsigned)((r >> 24) % 5);
                op_count[op]++;
                switch (op) {
                case 0: {       /* grow; may move */
                        size_t more = (1 + (r >> 28) % 3) * (REGION / PAGE);
                        char *q = mremap(b.p, pages * PAGE, (pages + more) * PAGE, MREMAP_MAYMOVE);
                        if (q == MAP_FAILED)
                                fail_range("mremap grow", b.p, pages * PAGE);
                        b.p = q;
                        buf_verify(&b, 0, pages, "mremap grow");
                        b.pages = pages + more;
                        buf_write(&b, pages, more, base + 7);
                        break;
                }
                case 1: {       /* move to a new place */
                        size_t len = pages * PAGE;
                        char *to = map(len + REGION);
                        char *q = mremap(b.p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
                        if (q == MAP_FAILED)
                                fail_range("mremap move", b.p, len);
                        munmap(to + len, REGION);
                        b.p = q;
                        break;
                }
                case 2: {       /* shrink */
                        size_t keep = pages / 2 + 1;
                        char *q = mremap(b.p, pages * PAGE, keep * PAGE, 0);
                        if (q == MAP_FAILED)
                                fail_range("mremap shrink", b.p, pages * PAGE);
                        b.pages = keep;
                        break;
                }
                case 3: {       /* drop a span; it reads zero, then gets written again */
                        size_t first = (r >> 32) % (pages / 2), n = 1 + (r >> 40) % (pages / 2);
                        if (madvise(b.p + first * PAGE, n * PAGE, MADV_DONTNEED) < 0)
                                fail("madvise");
                        memset(b.key + first, 0, n * 8);
                        buf_verify(&b, 0, pages, "MADV_DONTNEED");
                        buf_write(&b, first, n / 2, base + 13);
                        break;
                }
                default: {      /* unmap a 2 MiB piece out of the middle */
                        size_t first = pages / 2 - (REGION / PAGE) / 2, n = REGION / PAGE;
                        if (munmap(b.p + first * PAGE, n * PAGE) < 0)
                                fail("munmap");
                        buf_verify(&b, 0, first, "partial munmap");
                        buf_verify(&b, first + n, pages - first - n, "partial munmap");
                        munmap(b.p, first * PAGE);
                        munmap(b.p + (first + n) * PAGE, (pages - first - n) * PAGE);
                        b.p = NULL;
                }
                }
                if (b.p) {
                        buf_verify(&b, 0, b.pages, "operation");
                        munmap(b.p, b.pages * PAGE);
                }
                free(b.key);
                round++;
                iterations++;
        }
        return NULL;
}

int main(int argc, char **argv)
{
        if (argc < 3 || argc > 4) {
                fprintf(stderr, "usage: hp-chaos THREADS SECONDS [SEED]\n");
                return 2;
        }
        unsigned n = (unsigned)strtoul(argv[1], NULL, 10);
        double seconds = strtod(argv[2], NULL);
        if (argc == 4)
                seed = strtoull(argv[3], NULL, 10);
        if (n == 0 || n > 256 || seconds <= 0)
                return 2;
        printf("pid=%d\n", (int)getpid());
        fflush(stdout);
        end_time = now_s() + seconds;
        pthread_t *tid = calloc(n, sizeof(*tid));
        for (unsigned i = 0; i < n; i++)
                if (pthread_create(&tid[i], NULL, thread_main, (void *)(uintptr_t)i))
                        fail("pthread_create");
        for (unsigned i = 0; i < n; i++)
                pthread_join(tid[i], NULL);
        printf("threads=%u\niterations=%lu\nops=grow:%lu,move:%lu,shrink:%lu,dontneed:%lu,punch:%lu\nmismatches=%lu\n", n,
               (unsigned long)iterations, (unsigned long)op_count[0], (unsigned long)op_count[1],
               (unsigned long)op_count[2], (unsigned long)op_count[3], (unsigned long)op_count[4],
               (unsigned long)mismatches);
        free(tid);
        return mismatches ? 1 : 0;
}
