/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hp-workload.c: the memory workload that the integration tests and run.sh
 * drive, under hugepaged-run and under the kernel's own THP modes.
 *
 * It stands for an unmodified program: it uses plain mmap(2), links no
 * hugepaged library and calls madvise(2) only when --advise asks for a kernel
 * baseline (nohuge = MADV_NOHUGEPAGE, huge = MADV_HUGEPAGE). It must never
 * depend on hugepaged being there: every subcommand also runs without it.
 *
 * Every page it writes holds a pattern derived from (seed, page index in the
 * buffer), so a page that comes back zero, stale or from the wrong place is
 * reported, not only crashes. Results are `key=value` lines on stdout;
 * mismatch details go to stderr. Exit status: 0 all data intact, 1 data
 * mismatch, 2 usage or system error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE            4096ul
#define REGION          (2ul << 20)
#define REGION_PAGES    (REGION / PAGE)
#define WORDS           (PAGE / sizeof(uint64_t))
#define GOLDEN          UINT64_C(0x9E3779B97F4A7C15)
#define MAX_REPORTED    10      /* mismatch details printed per check */

enum advise { ADVISE_NONE, ADVISE_NOHUGE, ADVISE_HUGE };

static struct {
        enum advise advise;
        double wait_s;          /* bound for "wait until huge" polls */
        double settle_s;        /* sparse: pause before measuring */
        unsigned per_region;    /* sparse: pages touched per 2 MiB region */
        uint64_t seed;
} opt = {
        .advise = ADVISE_NONE,
        .wait_s = 30.0,
        .settle_s = 0.5,
        .per_region = 1,
        .seed = 1,
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
        va_list ap;

        fputs("hp-workload: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(2);
}

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
        struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* ---- patterns ---------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
        x ^= x >> 30;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 27;
        x *= 0x94D049BB133111EBull;
        x ^= x >> 31;
        return x;
}

static uint64_t page_key(uint64_t seed, uint64_t page)
{
        return mix64(seed * GOLDEN + page + 1) | 1;
}

static void page_fill(void *p, uint64_t seed, uint64_t page)
{
        uint64_t *w = p, k = page_key(seed, page);

        for (size_t i = 0; i < WORDS; i++)
                w[i] = k + i * GOLDEN;
}

static bool page_is_zero(const void *p)
{
        const uint64_t *w = p;

        for (size_t i = 0; i < WORDS; i++)
                if (w[i])
                        return false;
        return true;
}

/* Mismatch bookkeeping: one counter per check, details for the first few. */
struct check {
        const char *name;
        uint64_t mismatches;
        double started;
        pthread_mutex_t lock;
};

static void check_init(struct check *c, const char *name)
{
        c->name = name;
        c->mismatches = 0;
        c->started = now_s();
        pthread_mutex_init(&c->lock, NULL);
}

static void check_fail(struct check *c, const void *addr, uint64_t page, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void check_fail(struct check *c, const void *addr, uint64_t page, const char *fmt, ...)
{
        va_list ap;

        pthread_mutex_lock(&c->lock);
        if (c->mismatches++ < MAX_REPORTED) {
                fprintf(stderr, "MISMATCH %s: addr=%p page=%" PRIu64 ": ", c->name, addr, page);
                va_start(ap, fmt);
                vfprintf(stderr, fmt, ap);
                va_end(ap);
                fputc('\n', stderr);
        }
        pthread_mutex_unlock(&c->lock);
}

/* Verify one page against (seed, page); 0 if intact, 1 (and reported) if not. */
static unsigned page_verify(struct check *c, const void *p, uint64_t seed, uint64_t page)
{
        const uint64_t *w = p;
        uint64_t k = page_key(seed, page);
        size_t bad = 0, first = WORDS;

        for (size_t i = 0; i < WORDS; i++)
                if (w[i] != k + i * GOLDEN) {
                        if (first == WORDS)
                                first = i;
                        bad++;
                }
        if (!bad)
                return 0;
        check_fail(c, p, page, "%zu/%zu words differ%s, word %zu is %#" PRIx64 " want %#" PRIx64,
                   bad, WORDS, page_is_zero(p) ? " (page is zero)" : "",
                   first, w[first], k + first * GOLDEN);
        return 1;
}

static unsigned page_verify_zero(struct check *c, const void *p, uint64_t page)
{
        if (page_is_zero(p))
                return 0;
        check_fail(c, p, page, "should be zero, first word %#" PRIx64, *(const uint64_t *)p);
        return 1;
}

/* Fill / verify pages [first, first+n) of buf; page numbers are relative to buf. */
static void range_fill(char *buf, uint64_t first, uint64_t n, uint64_t seed)
{
        for (uint64_t i = first; i < first + n; i++)
                page_fill(buf + i * PAGE, seed, i);
}

static uint64_t range_verify(struct check *c, const char *buf, uint64_t first, uint64_t n, uint64_t seed)
{
        uint64_t bad = 0;

        for (uint64_t i = first; i < first + n; i++)
                bad += page_verify(c, buf + i * PAGE, seed, i);
        return bad;
}

static uint64_t range_verify_zero(struct check *c, const char *buf, uint64_t first, uint64_t n)
{
        uint64_t bad = 0;

        for (uint64_t i = first; i < first + n; i++)
                bad += page_verify_zero(c, buf + i * PAGE, i);
        return bad;
}

/* ---- random numbers (deterministic, per seed) -------------------------- */

static uint64_t rng_next(uint64_t *s)
{
        /* xorshift64* */
        uint64_t x = *s;

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_seed(uint64_t seed)
{
        uint64_t s = mix64(seed ^ 0xD1B54A32D192ED03ull);

        return s ? s : 1;
}

/* Random permutation of 0..n-1 (Fisher-Yates). */
static uint32_t *permutation(uint64_t n, uint64_t seed)
{
        uint32_t *p = malloc(n * sizeof(*p));
        uint64_t s = rng_seed(seed);

        if (!p)
                die("out of memory for a permutation of %" PRIu64, n);
        for (uint64_t i = 0; i < n; i++)
                p[i] = (uint32_t)i;
        for (uint64_t i = n - 1; i > 0; i--) {
                uint64_t j = rng_next(&s) % (i + 1);
                uint32_t t = p[i];

                p[i] = p[j];
                p[j] = t;
        }
        return p;
}

/* ---- mappings ---------------------------------------------------------- */

static const char *advise_name(enum advise a)
{
        return a == ADVISE_HUGE ? "huge" : a == ADVISE_NOHUGE ? "nohuge" : "none";
}

/* Plain private anonymous mapping; the only madvise is the --advise baseline. */
static char *map_anon(size_t len)
{
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED)
                die("mmap %zu bytes: %s", len, strerror(errno));
        if (opt.advise != ADVISE_NONE &&
            madvise(p, len, opt.advise == ADVISE_HUGE ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) < 0)
                die("madvise(%s) %p+%zu: %s", advise_name(opt.advise), (void *)p, len, strerror(errno));
        return p;
}

static void unmap(void *p, size_t len)
{
        if (munmap(p, len) < 0)
                die("munmap %p+%zu: %s", p, len, strerror(errno));
}

struct usage {
        uint64_t rss;           /* bytes resident in [addr, addr+len) */
        uint64_t anon_huge;     /* bytes of that mapped by transparent huge pages */
        unsigned vmas;          /* VMAs intersecting the range */
        unsigned partial;       /* of those, VMAs reaching outside the range */
        uint64_t unregistered;  /* bytes of the range in VMAs without a userfaultfd ("um") */
};

/* Resident pages of [start, end) per /proc/self/pagemap (bit 63: present). */
static uint64_t pagemap_resident(uintptr_t start, uintptr_t end)
{
        uint64_t buf[512], n = 0;
        int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                die("open /proc/self/pagemap: %s", strerror(errno));
        for (uintptr_t a = start; a < end;) {
                size_t want = (end - a) / PAGE;
                ssize_t r;

                if (want > 512)
                        want = 512;
                r = pread(fd, buf, want * sizeof(uint64_t), (off_t)(a / PAGE * sizeof(uint64_t)));
                if (r <= 0)
                        die("read /proc/self/pagemap: %s", r < 0 ? strerror(errno) : "short read");
                for (ssize_t i = 0; i < r / (ssize_t)sizeof(uint64_t); i++)
                        n += buf[i] >> 63;
                a += (uintptr_t)r / sizeof(uint64_t) * PAGE;
        }
        close(fd);
        return n * PAGE;
}

/*
 * Rss and AnonHugePages of [addr, addr+len): the sum over every smaps entry
 * that intersects it (the daemon may split a mapping into several VMAs). An
 * entry reaching outside the range (merged with a neighbour) is counted for
 * its intersection only: Rss from pagemap, AnonHugePages capped at it.
 */
static void mapping_usage(const void *addr, size_t len, struct usage *u)
{
        uintptr_t lo = (uintptr_t)addr, hi = lo + len;
        uintptr_t vs = 0, ve = 0;
        bool in = false, part = false;
        char *line = NULL;
        size_t cap = 0;
        FILE *f = fopen("/proc/self/smaps", "re");

        memset(u, 0, sizeof(*u));
        if (!f)
                die("open /proc/self/smaps: %s", strerror(errno));
        while (getline(&line, &cap, f) > 0) {
                unsigned long s, e, kb;

                if (sscanf(line, "%lx-%lx ", &s, &e) == 2) {
                        vs = s;
                        ve = e;
                        in = vs < hi && ve > lo;
                        part = in && (vs < lo || ve > hi);
                        if (in) {
                                u->vmas++;
                                if (part) {
                                        u->partial++;
                                        u->rss += pagemap_resident(vs > lo ? vs : lo, ve < hi ? ve : hi);
                                }
                        }
                        continue;
                }
                if (!in)
                        continue;
                if (strncmp(line, "VmFlags:", 8) == 0) {
                        if (!strstr(line, " um"))
                                u->unregistered += (ve < hi ? ve : hi) - (vs > lo ? vs : lo);
                        continue;
                }
                if (!part && sscanf(line, "Rss: %lu kB", &kb) == 1)
                        u->rss += (uint64_t)kb * 1024;
                else if (sscanf(line, "AnonHugePages: %lu kB", &kb) == 1) {
                        uint64_t b = (uint64_t)kb * 1024;

                        if (part) {
                                uint64_t isect = (ve < hi ? ve : hi) - (vs > lo ? vs : lo);

                                if (b > isect)
                                        b = isect;
                        }
                        u->anon_huge += b;
                }
        }
        free(line);
        fclose(f);
}

/* Poll until AnonHugePages of the range reaches `want` bytes or opt.wait_s passes. */
static bool wait_huge(const void *addr, size_t len, uint64_t want, struct usage *u, double *waited)
{
        double t0 = now_s();

        for (;;) {
                mapping_usage(addr, len, u);
                *waited = now_s() - t0;
                if (u->anon_huge >= want)
                        return true;
                if (*waited >= opt.wait_s)
                        return false;
                sleep_s(0.02);
        }
}

static uint64_t want_huge(size_t len)
{
        /* 99% of the size, rounded up to whole 2 MiB regions */
        uint64_t want = ((uint64_t)len * 99 / 100 + REGION - 1) / REGION * REGION;

        return want < len ? want : len;
}

static void print_usage_keys(const char *prefix, size_t len, const struct usage *u)
{
        printf("%srss_bytes=%" PRIu64 "\n", prefix, u->rss);
        printf("%sanon_huge_bytes=%" PRIu64 "\n", prefix, u->anon_huge);
        printf("%shuge_pct=%.2f\n", prefix, len ? 100.0 * (double)u->anon_huge / (double)len : 0.0);
        printf("%scoverage_pct=%.2f\n", prefix, u->rss ? 100.0 * (double)u->anon_huge / (double)u->rss : 0.0);
        printf("%svmas=%u\n", prefix, u->vmas);
        printf("%svmas_partial=%u\n", prefix, u->partial);
}

static size_t parse_size(const char *s)
{
        char *end;
        unsigned long long v;
        unsigned shift = 0;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s)
                die("bad size '%s'", s);
        switch (*end) {
        case 'k': case 'K': shift = 10; end++; break;
        case 'm': case 'M': shift = 20; end++; break;
        case 'g': case 'G': shift = 30; end++; break;
        case '\0': break;
        default: die("bad size '%s' (use bytes or K, M, G)", s);
        }
        if (*end == 'i' && end[1] == 'B')
                end += 2;
        else if (*end == 'B')
                end++;
        if (*end || v == 0 || v > (1ull << 46) >> shift)
                die("bad size '%s' (1 byte .. 64 TiB)", s);
        v <<= shift;
        if (v % PAGE)
                die("size '%s' is not a multiple of 4 KiB", s);
        return (size_t)v;
}

static void print_header(const char *cmd, const char *addr_label, const void *addr, size_t len)
{
        printf("cmd=%s\n", cmd);
        printf("advise=%s\n", advise_name(opt.advise));
        printf("size=%zu\n", len);
        printf("%s=%p\n", addr_label, addr);
        printf("aligned=%d\n", ((uintptr_t)addr % REGION) == 0);
}

/* ---- sparse ------------------------------------------------------------ */

/*
 * Touch opt.per_region pages (at pseudo-random distinct offsets; the first
 * page when 1) of every 2 MiB region, then report how much memory that cost.
 */
static int cmd_sparse(size_t len)
{
        struct check c;
        struct usage u;
        char *p = map_anon(len);
        uint64_t regions = (len + REGION - 1) / REGION, touched = 0, sample_bad;
        unsigned per = opt.per_region;
        uint64_t *offs = calloc(regions * per, sizeof(*offs));
        uint64_t s = rng_seed(opt.seed);
        double t0, t1;

        if (!offs)
                die("out of memory");
        check_init(&c, "sparse");
        /* choose the pages first, so the timed loop only faults */
        for (uint64_t r = 0; r < regions; r++) {
                uint64_t first = r * REGION_PAGES, npages = len / PAGE - first;
                unsigned k = 0;

                if (npages > REGION_PAGES)
                        npages = REGION_PAGES;
                while (k < per && k < npages) {
                        uint64_t pg = first + (per == 1 ? 0 : rng_next(&s) % npages);
                        bool dup = false;

                        for (unsigned j = 0; j < k; j++)
                                dup |= offs[r * per + j] == pg;
                        if (!dup)
                                offs[r * per + k++] = pg;
                }
                for (; k < per; k++)
                        offs[r * per + k] = UINT64_MAX;
        }
        t0 = now_s();
        for (uint64_t i = 0; i < regions * per; i++)
                if (offs[i] != UINT64_MAX) {
                        page_fill(p + offs[i] * PAGE, opt.seed, offs[i]);
                        touched++;
                }
        t1 = now_s();
        sleep_s(opt.settle_s);
        mapping_usage(p, len, &u);

        for (uint64_t i = 0; i < regions * per; i++)
                if (offs[i] != UINT64_MAX)
                        page_verify(&c, p + offs[i] * PAGE, opt.seed, offs[i]);
        /* a sample of untouched pages must read zero (checked after measuring) */
        sample_bad = 0;
        for (uint64_t r = 0; r < regions && r < 64; r++) {
                uint64_t pg = r * REGION_PAGES + REGION_PAGES - 1;
                bool mine = false;

                if (pg >= len / PAGE)
                        break;
                for (unsigned j = 0; j < per; j++)
                        mine |= offs[r * per + j] == pg;
                if (!mine)
                        sample_bad += page_verify_zero(&c, p + pg * PAGE, pg);
        }

        print_header("sparse", "addr", p, len);
        printf("pid=%d\n", (int)getpid());
        printf("regions=%" PRIu64 "\n", regions);
        printf("per_region=%u\n", per);
        printf("pages_touched=%" PRIu64 "\n", touched);
        printf("need_bytes=%" PRIu64 "\n", touched * PAGE);
        print_usage_keys("", len, &u);
        printf("rss_need_ratio=%.4f\n", touched ? (double)u.rss / (double)(touched * PAGE) : 0.0);
        printf("populate_ms=%.1f\n", (t1 - t0) * 1e3);
        printf("zero_sample_mismatches=%" PRIu64 "\n", sample_bad);
        printf("mismatches=%" PRIu64 "\n", c.mismatches);
        free(offs);
        unmap(p, len);
        return c.mismatches ? 1 : 0;
}

/* ---- dense ------------------------------------------------------------- */

/* Write every page (in order or in a random page order), wait for huge pages, verify. */
static int cmd_dense(size_t len, bool random_order)
{
        struct check c;
        struct usage u;
        uint64_t pages = len / PAGE;
        uint32_t *order = random_order ? permutation(pages, opt.seed) : NULL;
        char *p;
        double t0, t1, t2, waited;
        bool reached;

        if (pages > UINT32_MAX)
                die("size too large");
        check_init(&c, random_order ? "dense-rand" : "dense-seq");
        p = map_anon(len);
        t0 = now_s();
        for (uint64_t i = 0; i < pages; i++) {
                uint64_t pg = order ? order[i] : i;

                page_fill(p + pg * PAGE, opt.seed, pg);
        }
        t1 = now_s();
        reached = wait_huge(p, len, want_huge(len), &u, &waited);
        t2 = now_s();
        range_verify(&c, p, 0, pages, opt.seed);

        print_header(random_order ? "dense-rand" : "dense-seq", "addr", p, len);
        printf("pid=%d\n", (int)getpid());
        printf("pages=%" PRIu64 "\n", pages);
        print_usage_keys("", len, &u);
        printf("huge_reached=%d\n", reached);
        printf("populate_ms=%.1f\n", (t1 - t0) * 1e3);
        printf("wait_ms=%.1f\n", waited * 1e3);
        printf("verify_ms=%.1f\n", (now_s() - t2) * 1e3);
        printf("mismatches=%" PRIu64 "\n", c.mismatches);
        free(order);
        unmap(p, len);
        return c.mismatches ? 1 : 0;
}

/*
 * A sequential stream that stops: write the first HEAD regions in order
 * (the daemon hands regions to the kernel ahead of such a stream), pause,
 * then touch one page in each region after them. Those must be 4 KiB pages,
 * not huge pages left behind by the stream's readahead.
 */
#define STREAM_HEAD 8
#define STREAM_TAIL_PAGE 300    /* not near a region start: no stream there */

static int cmd_stream_stop(size_t len)
{
        struct check c;
        struct usage u;
        uint64_t regions = len / REGION, head = STREAM_HEAD * REGION_PAGES, bad = 0;
        double waited;

        if (regions <= STREAM_HEAD)
                die("stream-stop needs more than %d regions", STREAM_HEAD);
        check_init(&c, "stream-stop");
        char *p = map_anon(len);
        range_fill(p, 0, head, opt.seed);
        bool reached = wait_huge(p, STREAM_HEAD * REGION, STREAM_HEAD * REGION, &u, &waited);
        sleep_s(opt.settle_s);
        for (uint64_t r = STREAM_HEAD; r < regions; r++)
                page_fill(p + (r * REGION_PAGES + STREAM_TAIL_PAGE) * PAGE, opt.seed, r * REGION_PAGES + STREAM_TAIL_PAGE);
        uint64_t tail_rss = pagemap_resident((uintptr_t)p + STREAM_HEAD * REGION, (uintptr_t)p + len);
        /* every region the daemon handed to the kernel is registered again
         * once the stream is over (a correctness bound, not a speed one) */
        struct usage after;
        for (int i = 0; i < 500; i++) {
                mapping_usage(p, len, &after);
                if (after.unregistered == 0)
                        break;
                sleep_s(0.01);
        }
        bad += range_verify(&c, p, 0, head, opt.seed);
        for (uint64_t r = STREAM_HEAD; r < regions; r++) {
                uint64_t pg = r * REGION_PAGES + STREAM_TAIL_PAGE;
                bad += page_verify(&c, p + pg * PAGE, opt.seed, pg);
        }

        print_header("stream-stop", "addr", p, len);
        printf("pid=%d\n", (int)getpid());
        printf("head_huge_bytes=%" PRIu64 "\n", u.anon_huge);
        printf("head_huge_reached=%d\n", reached);
        printf("tail_pages_touched=%" PRIu64 "\n", regions - STREAM_HEAD);
        printf("tail_rss_bytes=%" PRIu64 "\n", tail_rss);
        printf("unregistered_bytes=%" PRIu64 "\n", after.unregistered);
        printf("mismatches=%" PRIu64 "\n", c.mismatches);
        unmap(p, len);
        return bad ? 1 : 0;
}

/* ---- integrity --------------------------------------------------------- */

#define MiB (1ul << 20)

static uint64_t total_mismatches;

static void check_done(struct check *c)
{
        printf("check_%s=%" PRIu64 "\n", c->name, c->mismatches);
        printf("check_%s_ms=%.1f\n", c->name, (now_s() - c->started) * 1e3);
        fflush(stdout);
        total_mismatches += c->mismatches;
}

/* Dense promotion, then threshold promotion: holes must read zero after it. */
static void integrity_promotion(void)
{
        struct check c;
        struct usage u;
        double waited;
        size_t len = 32 * MiB;
        uint64_t pages = len / PAGE;
        char *p = map_anon(len);

        check_init(&c, "promotion_dense");
        range_fill(p, 0, pages, 11);
        wait_huge(p, len, want_huge(len), &u, &waited);
        printf("promotion_dense_huge_pct=%.2f\n", 100.0 * (double)u.anon_huge / (double)len);
        range_verify(&c, p, 0, pages, 11);
        range_fill(p, 0, pages, 12);    /* writes into huge pages */
        range_verify(&c, p, 0, pages, 12);
        unmap(p, len);
        check_done(&c);

        /* 103 pages of every region, every 5th page: above the default threshold, not sequential */
        check_init(&c, "promotion_threshold");
        p = map_anon(len);
        for (uint64_t pg = 0; pg < pages; pg += 5)
                page_fill(p + pg * PAGE, 13, pg);
        wait_huge(p, len, want_huge(len), &u, &waited);
        printf("promotion_threshold_huge_pct=%.2f\n", 100.0 * (double)u.anon_huge / (double)len);
        for (uint64_t pg = 0; pg < pages; pg++)
                if (pg % 5 == 0)
                        page_verify(&c, p + pg * PAGE, 13, pg);
                else
                        page_verify_zero(&c, p + pg * PAGE, pg);
        unmap(p, len);
        check_done(&c);
}

/* MADV_DONTNEED over part of a (possibly promoted) range: zero there, intact elsewhere. */
static void integrity_dontneed(void)
{
        struct check c;
        struct usage u;
        double waited;
        size_t len = 16 * MiB;
        uint64_t pages = len / PAGE;
        /* from inside region 0 to inside region 2: splits huge pages on both ends */
        uint64_t d0 = (1 * MiB + 8192) / PAGE, dn = (5 * MiB - 4096) / PAGE - d0;
        char *p = map_anon(len);

        check_init(&c, "dontneed");
        range_fill(p, 0, pages, 21);
        wait_huge(p, len, want_huge(len), &u, &waited);
        if (madvise(p + d0 * PAGE, dn * PAGE, MADV_DONTNEED) < 0)
                die("madvise(MADV_DONTNEED): %s", strerror(errno));
        range_verify(&c, p, 0, d0, 21);
        range_verify_zero(&c, p, d0, dn);
        range_verify(&c, p, d0 + dn, pages - d0 - dn, 21);
        /* and a whole 2 MiB region, never promoted or not */
        if (madvise(p + 8 * MiB, REGION, MADV_DONTNEED) < 0)
                die("madvise(MADV_DONTNEED): %s", strerror(errno));
        range_verify_zero(&c, p, 8 * MiB / PAGE, REGION_PAGES);
        range_fill(p, 0, pages, 22);
        range_verify(&c, p, 0, pages, 22);
        unmap(p, len);
        check_done(&c);
}

/*
 * mremap: move (to a fixed place and after promotion), grow, shrink. A
 * program may mremap its whole mapping at any time: a failure of the call
 * is a failure of the check, as much as bad data is.
 */
static char *checked_mremap(struct check *c, const char *what, void *old, size_t old_len,
                            size_t new_len, int flags, void *new_addr)
{
        char *q = mremap(old, old_len, new_len, flags, new_addr);

        if (q == MAP_FAILED) {
                check_fail(c, old, 0, "mremap %s of %p+%zu to %zu bytes: %s",
                           what, old, old_len, new_len, strerror(errno));
                return NULL;
        }
        return q;
}

static void integrity_mremap(void)
{
        struct check c;
        struct usage u;
        double waited;
        size_t len = 8 * MiB, big = 24 * MiB, small = 6 * MiB + 3 * PAGE;
        uint64_t pages = len / PAGE;
        char *p, *q, *dst;

        check_init(&c, "mremap");

        /* move to a fixed address, half populated */
        p = map_anon(len);
        range_fill(p, 0, pages / 2, 31);
        dst = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (dst == MAP_FAILED)
                die("mmap: %s", strerror(errno));
        q = checked_mremap(&c, "move", p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
        if (q) {
                range_verify(&c, q, 0, pages / 2, 31);
                range_verify_zero(&c, q, pages / 2, pages / 2);
                range_fill(q, pages / 2, pages / 2, 31);
                range_verify(&c, q, 0, pages, 31);
                unmap(q, len);
        } else {
                unmap(p, len);
                unmap(dst, len);
        }

        /* move after promotion, to a place that is not 2 MiB aligned */
        p = map_anon(len);
        range_fill(p, 0, pages, 32);
        wait_huge(p, len, want_huge(len), &u, &waited);
        dst = mmap(NULL, len + 2 * REGION, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (dst == MAP_FAILED)
                die("mmap: %s", strerror(errno));
        unmap(dst, len + 2 * REGION);
        dst = (char *)(((uintptr_t)dst + REGION - 1) / REGION * REGION) + 16 * PAGE;
        q = checked_mremap(&c, "move", p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
        if (!q) {
                unmap(p, len);
                check_done(&c);
                return;
        }
        range_verify(&c, q, 0, pages, 32);

        /* grow by one region (may move), the new part reads zero */
        p = checked_mremap(&c, "grow", q, len, len + REGION, MREMAP_MAYMOVE, NULL);
        if (!p) {
                unmap(q, len);
                check_done(&c);
                return;
        }
        range_verify(&c, p, 0, pages, 32);
        range_verify_zero(&c, p, pages, REGION_PAGES);

        /* grow a lot (must move or extend) */
        q = checked_mremap(&c, "grow", p, len + REGION, big, MREMAP_MAYMOVE, NULL);
        if (!q) {
                unmap(p, len + REGION);
                check_done(&c);
                return;
        }
        range_verify(&c, q, 0, pages, 32);
        range_verify_zero(&c, q, pages, big / PAGE - pages);
        range_fill(q, pages, big / PAGE - pages, 33);
        range_verify(&c, q, 0, pages, 32);
        range_verify(&c, q, pages, big / PAGE - pages, 33);

        /* shrink to an unaligned size */
        p = checked_mremap(&c, "shrink", q, big, small, 0, NULL);
        if (!p) {
                unmap(q, big);
                check_done(&c);
                return;
        }
        range_verify(&c, p, 0, small / PAGE, 32);
        unmap(p, small);
        check_done(&c);
}

/* munmap of pieces inside a range; the rest stays intact and usable. */
static void integrity_munmap(void)
{
        struct check c;
        size_t len = 16 * MiB;
        uint64_t pages = len / PAGE;
        uint64_t h0 = (3 * MiB + 3 * PAGE) / PAGE, hn = (7 * MiB + 5 * PAGE) / PAGE - h0;
        uint64_t t0 = (15 * MiB) / PAGE;
        char *p = map_anon(len);

        check_init(&c, "munmap");
        range_fill(p, 0, pages / 2, 41);        /* half populated, half not */
        unmap(p + h0 * PAGE, hn * PAGE);
        unmap(p + t0 * PAGE, len - t0 * PAGE);
        range_verify(&c, p, 0, h0, 41);
        range_verify(&c, p, h0 + hn, pages / 2 - h0 - hn, 41);
        range_verify_zero(&c, p, pages / 2, t0 - pages / 2);
        range_fill(p, 0, h0, 42);
        range_fill(p, h0 + hn, t0 - h0 - hn, 42);
        range_verify(&c, p, 0, h0, 42);
        range_verify(&c, p, h0 + hn, t0 - h0 - hn, 42);
        unmap(p, h0 * PAGE);
        unmap(p + (h0 + hn) * PAGE, (t0 - h0 - hn) * PAGE);
        check_done(&c);
}

/* fork: the child sees the parent's data and has its own new pages; the parent is unaffected. */
static void integrity_fork(void)
{
        struct check c;
        size_t len = 16 * MiB;
        uint64_t pages = len / PAGE, half = pages / 2;
        char *p = map_anon(len);
        pid_t pid;
        int status;

        check_init(&c, "fork");
        range_fill(p, 0, half, 51);
        fflush(NULL);
        pid = fork();
        if (pid < 0)
                die("fork: %s", strerror(errno));
        if (pid == 0) {
                struct check cc;

                check_init(&cc, "fork_child");
                range_verify(&cc, p, 0, half, 51);
                range_verify_zero(&cc, p, half, half / 2);
                range_fill(p, half, half, 52);          /* new pages of its own */
                range_fill(p, 0, half / 4, 53);         /* copy-on-write of parent pages */
                range_verify(&cc, p, half, half, 52);
                range_verify(&cc, p, 0, half / 4, 53);
                range_verify(&cc, p, half / 4, half - half / 4, 51);
                fflush(stderr);
                _exit(cc.mismatches > 100 ? 100 : (int)cc.mismatches);
        }
        if (waitpid(pid, &status, 0) < 0)
                die("waitpid: %s", strerror(errno));
        if (!WIFEXITED(status))
                check_fail(&c, p, 0, "child died with status %#x", status);
        else if (WEXITSTATUS(status))
                check_fail(&c, p, 0, "child saw %d mismatches", WEXITSTATUS(status));
        range_verify(&c, p, 0, half, 51);
        range_verify_zero(&c, p, half, half);
        range_fill(p, half, half, 54);
        range_verify(&c, p, 0, half, 51);
        range_verify(&c, p, half, half, 54);
        unmap(p, len);
        check_done(&c);
}

static void write_all(int fd, const void *buf, size_t n)
{
        const char *b = buf;

        while (n) {
                ssize_t w = write(fd, b, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        die("write: %s", w < 0 ? strerror(errno) : "short write");
                b += w;
                n -= (size_t)w;
        }
}

static size_t read_all(int fd, void *buf, size_t n)
{
        char *b = buf;
        size_t got = 0;

        while (got < n) {
                ssize_t r = read(fd, b + got, n - got);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        die("read into %p: %s", (void *)(b + got), strerror(errno));
                if (r == 0)
                        break;
                got += (size_t)r;
        }
        return got;
}

static uint8_t byte_pattern(uint64_t seed, uint64_t i)
{
        return (uint8_t)(mix64(seed * GOLDEN + i / 8) >> (8 * (i % 8)));
}

static void bytes_verify(struct check *c, const char *what, const uint8_t *b, size_t n, uint64_t seed)
{
        for (size_t i = 0; i < n; i++)
                if (b[i] != byte_pattern(seed, i)) {
                        check_fail(c, b + i, i / PAGE, "%s: byte %zu is %#x want %#x",
                                   what, i, b[i], byte_pattern(seed, i));
                        return;
                }
}

/* read(2)/write(2) with untouched managed pages as the buffer: faults taken in kernel mode. */
static void integrity_kernel_faults(void)
{
        struct check c;
        size_t len = 8 * MiB, flen = 3 * MiB + 123;
        char *p = map_anon(len);
        uint8_t *src = malloc(flen), zero[PAGE];
        int pfd[2], fd;

        check_init(&c, "kernel_faults");
        if (!src)
                die("out of memory");
        for (size_t i = 0; i < flen; i++)
                src[i] = byte_pattern(61, i);

        /* pipe -> one untouched page, and -> an unaligned buffer across two untouched pages */
        if (pipe(pfd) < 0)
                die("pipe: %s", strerror(errno));
        write_all(pfd[1], src, PAGE);
        if (read_all(pfd[0], p + 5 * PAGE, PAGE) != PAGE)
                check_fail(&c, p + 5 * PAGE, 5, "short read from pipe");
        bytes_verify(&c, "pipe read", (uint8_t *)p + 5 * PAGE, PAGE, 61);
        write_all(pfd[1], src, 6000);
        if (read_all(pfd[0], p + 9 * PAGE + 2048, 6000) != 6000)
                check_fail(&c, p + 9 * PAGE, 9, "short read from pipe");
        bytes_verify(&c, "pipe read across pages", (uint8_t *)p + 9 * PAGE + 2048, 6000, 61);

        /* write(2) from an untouched page: kernel read fault, must give zeros */
        write_all(pfd[1], p + 20 * PAGE, PAGE);
        if (read_all(pfd[0], zero, PAGE) != PAGE)
                check_fail(&c, p + 20 * PAGE, 20, "short read from pipe");
        if (!page_is_zero(zero))
                check_fail(&c, p + 20 * PAGE, 20, "write(2) from an untouched page gave non-zero data");
        close(pfd[0]);
        close(pfd[1]);

        /* a file -> 3 MiB of untouched memory, unaligned, spanning two 2 MiB regions */
        fd = memfd_create("hp-workload", MFD_CLOEXEC);
        if (fd < 0)
                die("memfd_create: %s", strerror(errno));
        write_all(fd, src, flen);
        if (lseek(fd, 0, SEEK_SET) < 0)
                die("lseek: %s", strerror(errno));
        if (read_all(fd, p + 1 * MiB + 100, flen) != flen)
                check_fail(&c, p + 1 * MiB, 0, "short read from file");
        bytes_verify(&c, "file read", (uint8_t *)p + 1 * MiB + 100, flen, 61);
        close(fd);
        /* the bytes around the read target stay zero */
        for (size_t i = 1 * MiB; i < 1 * MiB + 100; i++)
                if (p[i]) {
                        check_fail(&c, p + i, i / PAGE, "byte before the read target is %#x", (uint8_t)p[i]);
                        break;
                }
        free(src);
        unmap(p, len);
        check_done(&c);
}

/* 8 threads fault into one mapping at once: own slices, then interleaved pages. */
#define NTHREADS 8

struct fault_thread {
        pthread_t tid;
        unsigned idx;
        char *buf;
        uint64_t pages;
        pthread_barrier_t *barrier;
        struct check *c;
};

static void *fault_thread_main(void *arg)
{
        struct fault_thread *t = arg;
        uint64_t half = t->pages / 2, slice = half / NTHREADS;
        uint32_t *order = permutation(slice, t->idx + 100);

        pthread_barrier_wait(t->barrier);
        /* own slice of the first half, in a random order */
        for (uint64_t i = 0; i < slice; i++) {
                uint64_t pg = t->idx * slice + order[i];

                page_fill(t->buf + pg * PAGE, 71, pg);
        }
        /* interleaved pages of the second half: neighbours belong to other threads */
        for (uint64_t pg = half + t->idx; pg < t->pages; pg += NTHREADS)
                page_fill(t->buf + pg * PAGE, 71, pg);
        range_verify(t->c, t->buf, t->idx * slice, slice, 71);
        for (uint64_t pg = half + t->idx; pg < t->pages; pg += NTHREADS)
                page_verify(t->c, t->buf + pg * PAGE, 71, pg);
        free(order);
        return NULL;
}

static void integrity_threads(void)
{
        struct check c;
        struct fault_thread t[NTHREADS];
        pthread_barrier_t barrier;
        size_t len = 64 * MiB;
        char *p = map_anon(len);

        check_init(&c, "threads");
        pthread_barrier_init(&barrier, NULL, NTHREADS);
        for (unsigned i = 0; i < NTHREADS; i++) {
                t[i] = (struct fault_thread){ .idx = i, .buf = p, .pages = len / PAGE,
                                              .barrier = &barrier, .c = &c };
                if (pthread_create(&t[i].tid, NULL, fault_thread_main, &t[i]))
                        die("pthread_create failed");
        }
        for (unsigned i = 0; i < NTHREADS; i++)
                pthread_join(t[i].tid, NULL);
        pthread_barrier_destroy(&barrier);
        range_verify(&c, p, 0, len / PAGE, 71);
        unmap(p, len);
        check_done(&c);
}

static int cmd_integrity(void)
{
        printf("cmd=integrity\n");
        printf("advise=%s\n", advise_name(opt.advise));
        printf("pid=%d\n", (int)getpid());
        fflush(stdout);
        integrity_promotion();
        integrity_dontneed();
        integrity_mremap();
        integrity_munmap();
        integrity_fork();
        integrity_kernel_faults();
        integrity_threads();
        printf("mismatches=%" PRIu64 "\n", total_mismatches);
        return total_mismatches ? 1 : 0;
}

/* ---- threads-loop ------------------------------------------------------ */

struct loop_thread {
        pthread_t tid;
        unsigned idx;
        double end;
        uint64_t iterations;
        struct check *c;
};

static void *loop_thread_main(void *arg)
{
        struct loop_thread *t = arg;
        size_t len = 64 * MiB;

        while (now_s() < t->end) {
                uint64_t seed = (uint64_t)t->idx << 32 | t->iterations;
                char *p = map_anon(len);

                range_fill(p, 0, len / PAGE, seed);
                range_verify(t->c, p, 0, len / PAGE, seed);
                unmap(p, len);
                t->iterations++;
        }
        return NULL;
}

static int cmd_threads_loop(unsigned n, double seconds)
{
        struct check c;
        struct loop_thread *t = calloc(n, sizeof(*t));
        uint64_t iters = 0;
        double t0 = now_s();

        if (!t)
                die("out of memory");
        printf("cmd=threads-loop\n");
        printf("pid=%d\n", (int)getpid());
        fflush(stdout);
        check_init(&c, "threads_loop");
        for (unsigned i = 0; i < n; i++) {
                t[i] = (struct loop_thread){ .idx = i, .end = t0 + seconds, .c = &c };
                if (pthread_create(&t[i].tid, NULL, loop_thread_main, &t[i]))
                        die("pthread_create failed");
        }
        for (unsigned i = 0; i < n; i++) {
                pthread_join(t[i].tid, NULL);
                iters += t[i].iterations;
        }
        printf("threads=%u\n", n);
        printf("iterations=%" PRIu64 "\n", iters);
        printf("elapsed_ms=%.1f\n", (now_s() - t0) * 1e3);
        printf("mismatches=%" PRIu64 "\n", c.mismatches);
        free(t);
        return c.mismatches ? 1 : 0;
}

/* ---- main -------------------------------------------------------------- */

static void usage(FILE *f)
{
        fputs("usage: hp-workload [OPTIONS] COMMAND [ARGS]\n"
              "commands:\n"
              "  sparse SIZE               touch pages of every 2 MiB region, report Rss\n"
              "  dense-seq SIZE            write every page in order, wait for huge pages, verify\n"
              "  dense-rand SIZE           the same in a random page order\n"
              "  stream-stop SIZE          write 8 regions in order, pause (--settle), touch one\n"
              "                            page of every later region, report their Rss\n"
              "  integrity                 data checks across promotion, madvise, mremap, munmap,\n"
              "                            fork, kernel-mode faults and concurrent faults\n"
              "  threads-loop N SECONDS    N threads map, write, verify, unmap 64 MiB in a loop\n"
              "options:\n"
              "  --advise none|nohuge|huge madvise baseline for every mapping (default none)\n"
              "  --wait SECONDS            bound for waiting until memory is huge (default 30)\n"
              "  --settle SECONDS          sparse, stream-stop: pause (default 0.5)\n"
              "  --per-region N            sparse: pages touched per 2 MiB region (default 1)\n"
              "  --seed N                  pattern seed (default 1)\n"
              "SIZE takes K, M, G suffixes (powers of 1024).\n", f);
}

static double parse_seconds(const char *s)
{
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno || end == s || *end || v < 0 || v > 86400)
                die("bad number of seconds '%s'", s);
        return v;
}

static unsigned long parse_uint(const char *s, unsigned long max)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v > max)
                die("bad number '%s'", s);
        return v;
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "advise", required_argument, NULL, 'a' },
                { "wait", required_argument, NULL, 'w' },
                { "settle", required_argument, NULL, 's' },
                { "per-region", required_argument, NULL, 'p' },
                { "seed", required_argument, NULL, 'S' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        const char *cmd;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (ch) {
                case 'a':
                        if (!strcmp(optarg, "none"))
                                opt.advise = ADVISE_NONE;
                        else if (!strcmp(optarg, "nohuge"))
                                opt.advise = ADVISE_NOHUGE;
                        else if (!strcmp(optarg, "huge"))
                                opt.advise = ADVISE_HUGE;
                        else
                                die("--advise takes none, nohuge or huge");
                        break;
                case 'w': opt.wait_s = parse_seconds(optarg); break;
                case 's': opt.settle_s = parse_seconds(optarg); break;
                case 'p': opt.per_region = (unsigned)parse_uint(optarg, REGION_PAGES); break;
                case 'S': opt.seed = parse_uint(optarg, ULONG_MAX); break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (opt.per_region == 0)
                die("--per-region must be 1..%lu", REGION_PAGES);
        if (optind >= argc) {
                usage(stderr);
                return 2;
        }
        cmd = argv[optind++];
        argc -= optind;
        argv += optind;

        if (!strcmp(cmd, "sparse") && argc == 1)
                r = cmd_sparse(parse_size(argv[0]));
        else if (!strcmp(cmd, "dense-seq") && argc == 1)
                r = cmd_dense(parse_size(argv[0]), false);
        else if (!strcmp(cmd, "dense-rand") && argc == 1)
                r = cmd_dense(parse_size(argv[0]), true);
        else if (!strcmp(cmd, "stream-stop") && argc == 1)
                r = cmd_stream_stop(parse_size(argv[0]));
        else if (!strcmp(cmd, "integrity") && argc == 0)
                r = cmd_integrity();
        else if (!strcmp(cmd, "threads-loop") && argc == 2)
                r = cmd_threads_loop((unsigned)parse_uint(argv[0], 1024), parse_seconds(argv[1]));
        else {
                usage(stderr);
                return 2;
        }
        fflush(stdout);
        return r;
}
