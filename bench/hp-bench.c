/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hp-bench.c: the benchmark workload (BENCH.md cases S1-S9), one binary for
 * every baseline: the runner starts it plainly with --advise never, always or
 * khugepaged, and unmodified under hugepaged-run for the hugepaged rows.
 *
 * It stands for an ordinary program: plain mmap(2) of private anonymous
 * memory, no hugepaged library, and madvise(2) only as the --advise baseline
 * asks. The one exception is the `floor` fault mode of `latency`, which
 * serves its own faults through userfaultfd in process (the S7 floor) and is
 * never run under hugepaged-run.
 *
 * Results are `key=value` lines on stdout, one run per invocation; the runner
 * (bench/bench.py) repeats runs and takes medians. Exit status: 0 ok, 1 data
 * check failed, 2 usage or system error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE            4096ul
#define REGION          (2ul << 20)
#define REGION_PAGES    (REGION / PAGE)
#define MiB             (1ul << 20)

enum advise { ADVISE_NONE, ADVISE_NEVER, ADVISE_ALWAYS, ADVISE_KHUGEPAGED };

static struct {
        enum advise advise;
        uint64_t seed;
        double updates_s;       /* dense/mixed: random-update phase */
        double wait_s;          /* dense/mixed: bound for coverage polls */
        double cover_want;      /* dense: coverage (0..1) whose time is reported */
        unsigned per_region;    /* sparse: pages per region (0: random 1..random_max) */
        unsigned random_max;
        unsigned dense_every;   /* mixed: every Nth region is dense */
        unsigned threads;       /* latency */
        unsigned clients;       /* latency, scale: processes */
        unsigned stride;        /* latency: pages between touched pages */
        unsigned per_region_lat;/* latency: pages touched per region */
        unsigned ranges;        /* scale: ranges per client */
        unsigned max_children;  /* forkfit */
        unsigned forks;         /* fork: children forked */
        double child_timeout_s; /* forkfit, scale: one child's work at most */
        const char *fault_mode; /* latency: plain | floor-block | floor-busy */
        bool prewarm;           /* warm the memory right before timing */
        int daemon_pid;         /* scale: read its RSS */
} opt = {
        .advise = ADVISE_NONE,
        .seed = 1,
        .updates_s = 10,
        .wait_s = 30,
        .cover_want = 0.99,
        .per_region = 1,
        .random_max = 32,
        .dense_every = 4,
        .threads = 1,
        .clients = 1,
        .stride = 16,
        .per_region_lat = 24,
        .ranges = 16,
        .max_children = 64,
        .forks = 200,
        .child_timeout_s = 60,
        .fault_mode = "plain",
        .prewarm = true,
        .daemon_pid = 0,
};

static char self_exe[4096];      /* children run this, named hp-bench (not "exe") */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
        va_list ap;

        fputs("hp-bench: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(2);
}

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t t0)
{
        return (double)(now_ns() - t0) / 1e6;
}

static void sleep_ms(double ms)
{
        struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms * 1e6) % 1000000000l };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* ---- random numbers ---------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
        uint64_t x = *s;        /* xorshift64* */

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_init(uint64_t seed)
{
        uint64_t s = (seed + 1) * 0x9E3779B97F4A7C15ull;

        s ^= s >> 31;
        return s ? s : 1;
}

/* Uniform in [0, n) without a division. */
static inline uint64_t rng_below(uint64_t *s, uint64_t n)
{
        return (uint64_t)(((unsigned __int128)rng_next(s) * n) >> 64);
}

static void shuffle_u32(uint32_t *v, uint64_t n, uint64_t seed)
{
        uint64_t s = rng_init(seed);

        for (uint64_t i = n - 1; i > 0 && n > 1; i--) {
                uint64_t j = rng_below(&s, i + 1);
                uint32_t t = v[i];

                v[i] = v[j];
                v[j] = t;
        }
}

/* ---- mappings and their memory use ------------------------------------- */

static const char *advise_name(enum advise a)
{
        switch (a) {
        case ADVISE_NEVER: return "never";
        case ADVISE_ALWAYS: return "always";
        case ADVISE_KHUGEPAGED: return "khugepaged";
        default: return "none";
        }
}

static void advise(void *p, size_t len, int advice)
{
        if (madvise(p, len, advice) < 0)
                die("madvise(%d) %p+%zu: %s", advice, p, len, strerror(errno));
}

/* Plain private anonymous memory; the madvise is the baseline's. khugepaged
 * starts at 4 KiB and asks for huge pages after populating (want_huge()). */
static char *map_anon(size_t len)
{
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED)
                die("mmap %zu bytes: %s", len, strerror(errno));
        if (opt.advise == ADVISE_NEVER || opt.advise == ADVISE_KHUGEPAGED)
                advise(p, len, MADV_NOHUGEPAGE);
        else if (opt.advise == ADVISE_ALWAYS)
                advise(p, len, MADV_HUGEPAGE);
        return p;
}

static void want_huge(void *p, size_t len)
{
        if (opt.advise == ADVISE_KHUGEPAGED)
                advise(p, len, MADV_HUGEPAGE);
}

struct usage {
        uint64_t rss, anon_huge;
        unsigned vmas;
};

static uint64_t pagemap_resident(uintptr_t start, uintptr_t end)
{
        uint64_t buf[512], n = 0;
        int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                die("open /proc/self/pagemap: %s", strerror(errno));
        for (uintptr_t a = start; a < end;) {
                size_t want = (end - a) / PAGE > 512 ? 512 : (end - a) / PAGE;
                ssize_t r = pread(fd, buf, want * 8, (off_t)(a / PAGE * 8));

                if (r <= 0)
                        die("read /proc/self/pagemap: %s", r < 0 ? strerror(errno) : "short read");
                for (ssize_t i = 0; i < r / 8; i++)
                        n += buf[i] >> 63;
                a += (uintptr_t)r / 8 * PAGE;
        }
        close(fd);
        return n * PAGE;
}

/*
 * Rss and AnonHugePages of [p, p+len) from /proc/self/smaps: every VMA that
 * intersects it (hugepaged may split the mapping while it promotes); a VMA
 * merged with a neighbour counts for the intersection only.
 */
static void usage_of(const void *p, size_t len, struct usage *u)
{
        uintptr_t lo = (uintptr_t)p, hi = lo + len, vs = 0, ve = 0;
        bool in = false, partial = false;
        char line[256];
        FILE *f = fopen("/proc/self/smaps", "re");

        memset(u, 0, sizeof(*u));
        if (!f)
                die("open /proc/self/smaps: %s", strerror(errno));
        while (fgets(line, sizeof(line), f)) {
                unsigned long s, e, kb;

                if (sscanf(line, "%lx-%lx ", &s, &e) == 2) {
                        vs = s;
                        ve = e;
                        in = vs < hi && ve > lo;
                        partial = in && (vs < lo || ve > hi);
                        if (in) {
                                u->vmas++;
                                if (partial)
                                        u->rss += pagemap_resident(vs > lo ? vs : lo, ve < hi ? ve : hi);
                        }
                } else if (in && !partial && sscanf(line, "Rss: %lu kB", &kb) == 1) {
                        u->rss += (uint64_t)kb << 10;
                } else if (in && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1) {
                        uint64_t b = (uint64_t)kb << 10, isect = (ve < hi ? ve : hi) - (vs > lo ? vs : lo);

                        u->anon_huge += partial && b > isect ? isect : b;
                }
        }
        fclose(f);
}

static double coverage(const struct usage *u)
{
        return u->rss ? (double)u->anon_huge / (double)u->rss : 0.0;
}

static void print_usage(const char *prefix, const struct usage *u)
{
        printf("%srss_bytes=%" PRIu64 "\n", prefix, u->rss);
        printf("%sanon_huge_bytes=%" PRIu64 "\n", prefix, u->anon_huge);
        printf("%scoverage_pct=%.2f\n", prefix, 100.0 * coverage(u));
        printf("%svmas=%u\n", prefix, u->vmas);
}

static void print_header(const char *cmd, const void *p, size_t len)
{
        printf("cmd=%s\n", cmd);
        printf("advise=%s\n", advise_name(opt.advise));
        printf("pid=%d\n", (int)getpid());
        printf("size=%zu\n", len);
        printf("aligned=%d\n", (uintptr_t)p % REGION == 0);
}

/* The value every touched page starts with: its page number (checked at the end). */
static inline void touch(char *p, uint64_t pg)
{
        *(volatile uint64_t *)(p + pg * PAGE) = pg + 1;
}

static uint64_t check_touched(const char *p, uint64_t pg)
{
        return *(const volatile uint64_t *)(p + pg * PAGE) != pg + 1;
}

/* ---- latency samples ----------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

static uint64_t quantile(const uint64_t *sorted, size_t n, double q)
{
        if (n == 0)
                return 0;
        size_t i = (size_t)(q * (double)n);
        return sorted[i < n ? i : n - 1];
}

static void print_latency(const char *prefix, uint64_t *v, size_t n)
{
        uint64_t sum = 0;

        qsort(v, n, sizeof(*v), cmp_u64);
        for (size_t i = 0; i < n; i++)
                sum += v[i];
        printf("%sfaults=%zu\n", prefix, n);
        printf("%sp50_ns=%" PRIu64 "\n", prefix, quantile(v, n, 0.50));
        printf("%sp99_ns=%" PRIu64 "\n", prefix, quantile(v, n, 0.99));
        printf("%smax_ns=%" PRIu64 "\n", prefix, n ? v[n - 1] : 0);
        printf("%smean_ns=%" PRIu64 "\n", prefix, n ? sum / n : 0);
}

/* ---- warm ---------------------------------------------------------------- */

/* Touch and free `len` once, so no measured case pays the host's first touch. */
static int cmd_warm(size_t len)
{
        uint64_t t0 = now_ns();
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED)
                die("mmap %zu bytes: %s", len, strerror(errno));
        advise(p, len, MADV_HUGEPAGE);
        for (size_t off = 0; off < len; off += PAGE)
                p[off] = 1;
        munmap(p, len);
        printf("cmd=warm\nsize=%zu\nwarm_ms=%.1f\n", len, ms_since(t0));
        return 0;
}

/*
 * Touch and free `len` in a forked child just before a timed phase. This
 * VM's host takes freed guest memory back after a few seconds (free page
 * reporting) and the next first touch of it is several times slower, so a
 * warm-up at the start of the run is not enough. The child is a plain fork
 * (under hugepaged-run a client of its own; nothing in it is timed).
 */
static void prewarm(size_t len)
{
        if (!opt.prewarm || len == 0)
                return;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
                die("fork: %s", strerror(errno));
        if (pid == 0) {
                char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED)
                        _exit(1);
                madvise(p, len, MADV_HUGEPAGE);
                for (size_t off = 0; off < len; off += PAGE)
                        p[off] = 1;
                _exit(0);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
}

/* ---- S1 sparse ------------------------------------------------------------ */

/* S1: per_region pages of every region (1: the first page); S1r: a random
 * 1..random_max distinct pages of each, in random order. */
static int cmd_sparse(size_t len)
{
        uint64_t regions = len / REGION, s = rng_init(opt.seed), n = 0, bad = 0;
        uint32_t *pages = malloc(regions * (opt.per_region ? opt.per_region : opt.random_max) * sizeof(*pages));
        uint8_t *seen = calloc(REGION_PAGES, 1);
        struct usage u;

        if (!pages || !seen)
                die("out of memory");
        for (uint64_t r = 0; r < regions; r++) {
                unsigned k = opt.per_region ? opt.per_region : 1 + (unsigned)rng_below(&s, opt.random_max);

                memset(seen, 0, REGION_PAGES);
                for (unsigned i = 0; i < k && i < REGION_PAGES; i++) {
                        unsigned pg = opt.per_region == 1 ? 0 : (unsigned)rng_below(&s, REGION_PAGES);

                        if (seen[pg]) {
                                i--;
                                continue;
                        }
                        seen[pg] = 1;
                        pages[n++] = (uint32_t)(r * REGION_PAGES + pg);
                }
        }
        if (!opt.per_region)
                shuffle_u32(pages, n, opt.seed);

        prewarm(len);
        char *p = map_anon(len);
        uint64_t t0 = now_ns();
        for (uint64_t i = 0; i < n; i++)
                touch(p, pages[i]);
        double populate_ms = ms_since(t0);
        want_huge(p, len);
        sleep_ms(200);  /* let queued work (promotions, if any were due) land */
        usage_of(p, len, &u);
        for (uint64_t i = 0; i < n; i++)
                bad += check_touched(p, pages[i]);

        print_header("sparse", p, len);
        printf("pages_touched=%" PRIu64 "\n", n);
        printf("need_bytes=%" PRIu64 "\n", n * PAGE);
        print_usage("", &u);
        printf("populate_ms=%.1f\n", populate_ms);
        printf("mismatches=%" PRIu64 "\n", bad);
        munmap(p, len);
        free(pages);
        free(seen);
        return bad ? 1 : 0;
}

/* ---- S2/S3/S5 dense, S4 mixed --------------------------------------------- */

struct cover_poll {
        double want;            /* coverage fraction to reach */
        double reached_ms;      /* since t0, -1 if not reached */
};

/*
 * Poll coverage of [p, p+len) until it reaches `want` or wait_s passes.
 * Records the time (since t0) each of the wanted levels was first seen and
 * prints a coarse timeline. `huge_target` (bytes) replaces Rss as the
 * denominator when nonzero (mixed: only the dense part can be huge).
 */
static void poll_coverage(const char *p, size_t len, uint64_t t0, struct cover_poll *cp, unsigned ncp,
                          uint64_t huge_target, double wait_s, struct usage *u)
{
        double next_print = 0, interval = wait_s > 30 ? 1000 : 10;
        uint64_t start = now_ns();
        char timeline[4096] = "";
        size_t tl = 0;

        for (unsigned i = 0; i < ncp; i++)
                cp[i].reached_ms = -1;
        for (;;) {
                usage_of(p, len, u);
                double c = huge_target ? (double)u->anon_huge / (double)huge_target : coverage(u);
                double t = ms_since(t0);
                bool all = true;

                for (unsigned i = 0; i < ncp; i++) {
                        if (cp[i].reached_ms < 0 && c >= cp[i].want)
                                cp[i].reached_ms = t;
                        all &= cp[i].reached_ms >= 0;
                }
                if (t >= next_print && tl < sizeof(timeline) - 32) {
                        tl += (size_t)snprintf(timeline + tl, sizeof(timeline) - tl, "%s%.0f:%.1f", tl ? "," : "",
                                               t, 100 * c);
                        next_print = t + (wait_s > 30 ? 5000 : 100);
                }
                if (all || (double)(now_ns() - start) / 1e9 >= wait_s)
                        break;
                sleep_ms(interval);
        }
        printf("cover_timeline=%s\n", timeline);
}

/* Random 8-byte updates for opt.updates_s seconds over `nregions` regions
 * listed in `regs` (NULL: all regions of p). Returns updates per second. */
static double random_updates(char *p, uint64_t nregions, const uint32_t *regs)
{
        uint64_t s = rng_init(opt.seed ^ 0xabcdef), n = 0, t0 = now_ns(), dur = (uint64_t)(opt.updates_s * 1e9);
        const uint64_t words = REGION / 8;

        if (opt.updates_s <= 0 || nregions == 0)
                return 0;
        do {
                for (unsigned i = 0; i < 65536; i++) {
                        uint64_t r = rng_next(&s);
                        uint64_t reg = (uint64_t)(((unsigned __int128)r * nregions) >> 64);
                        uint64_t w = r & (words - 1);   /* reg came from the high bits */

                        if (regs)
                                reg = regs[reg];
                        ((volatile uint64_t *)(p + reg * REGION))[w]++;
                }
                n += 65536;
        } while (now_ns() - t0 < dur);
        return (double)n / ((double)(now_ns() - t0) / 1e9);
}

static int cmd_dense(size_t len, bool rand_order)
{
        uint64_t pages = len / PAGE, bad = 0;
        uint32_t *order = NULL;
        struct usage u;

        if (pages > UINT32_MAX)
                die("size too large");
        if (rand_order) {
                order = malloc(pages * sizeof(*order));
                if (!order)
                        die("out of memory");
                for (uint64_t i = 0; i < pages; i++)
                        order[i] = (uint32_t)i;
                shuffle_u32(order, pages, opt.seed);
        }
        prewarm(len);
        char *p = map_anon(len);
        uint64_t t0 = now_ns();
        for (uint64_t i = 0; i < pages; i++)
                touch(p, order ? order[i] : i);
        double populate_ms = ms_since(t0);
        uint64_t t1 = now_ns();
        want_huge(p, len);
        /* coverage levels: 90% (S5), the wanted level (S2/S3: 99%) */
        struct cover_poll cp[2] = { { .want = 0.90 }, { .want = opt.cover_want } };
        poll_coverage(p, len, t0, cp, 2, 0, opt.wait_s, &u);
        double updates = random_updates(p, len / REGION, NULL);
        for (uint64_t i = 0; i < pages; i++)
                bad += *(uint64_t *)(p + i * PAGE) < i + 1;   /* updates only add */

        print_header(rand_order ? "dense-rand" : "dense-seq", p, len);
        printf("pages=%" PRIu64 "\n", pages);
        printf("populate_ms=%.1f\n", populate_ms);
        printf("t90_ms=%.1f\n", cp[0].reached_ms);   /* since populate start */
        printf("cover_after_ms=%.1f\n", cp[1].reached_ms < 0 ? -1 : cp[1].reached_ms - (double)(t1 - t0) / 1e6);
        printf("cover_want_pct=%.1f\n", 100 * opt.cover_want);
        print_usage("", &u);
        printf("updates_per_s=%.0f\n", updates);
        printf("mismatches=%" PRIu64 "\n", bad);
        munmap(p, len);
        free(order);
        return bad ? 1 : 0;
}

/* Not a BENCH.md case: write `len`, wait until it is huge, then drop one
 * 4 KiB page of every region (MADV_DONTNEED splits each THP's mapping).
 * tests/bench checks that the daemon's tracer counts those splits. */
static int cmd_split(size_t len)
{
        struct usage u;
        char *p = map_anon(len);

        for (uint64_t pg = 0; pg < len / PAGE; pg++)
                touch(p, pg);
        want_huge(p, len);
        struct cover_poll cp = { .want = 0.99 };
        poll_coverage(p, len, now_ns(), &cp, 1, 0, opt.wait_s, &u);
        uint64_t huge_before = u.anon_huge;
        for (uint64_t r = 0; r < len / REGION; r++)
                advise(p + r * REGION + REGION / 2, PAGE, MADV_DONTNEED);
        usage_of(p, len, &u);
        print_header("split", p, len);
        printf("anon_huge_before=%" PRIu64 "\n", huge_before);
        printf("anon_huge_after=%" PRIu64 "\n", u.anon_huge);
        munmap(p, len);
        return 0;
}

/* S4: every dense_every-th region written in full, the others one page each. */
static int cmd_mixed(size_t len)
{
        uint64_t regions = len / REGION, ndense = 0, nsparse = 0, bad = 0;
        uint32_t *dense = malloc(regions * sizeof(*dense));
        struct usage u;

        if (!dense)
                die("out of memory");
        prewarm(len);
        char *p = map_anon(len);
        uint64_t t0 = now_ns();
        for (uint64_t r = 0; r < regions; r++) {
                if (r % opt.dense_every == 0) {
                        dense[ndense++] = (uint32_t)r;
                        for (uint64_t pg = 0; pg < REGION_PAGES; pg++)
                                touch(p, r * REGION_PAGES + pg);
                } else {
                        touch(p, r * REGION_PAGES);
                        nsparse++;
                }
        }
        double populate_ms = ms_since(t0);
        want_huge(p, len);
        struct cover_poll cp = { .want = 0.99 };
        poll_coverage(p, len, t0, &cp, 1, ndense * REGION, opt.wait_s, &u);
        double updates = random_updates(p, ndense, dense);
        for (uint64_t r = 0; r < regions; r++)
                bad += *(uint64_t *)(p + r * REGION) < r * REGION_PAGES + 1;  /* updates only add */

        print_header("mixed", p, len);
        printf("dense_regions=%" PRIu64 "\n", ndense);
        printf("sparse_regions=%" PRIu64 "\n", nsparse);
        /* what the memory is worth: dense at 2 MiB, sparse at 4 KiB */
        printf("ideal_bytes=%" PRIu64 "\n", ndense * REGION + nsparse * PAGE);
        printf("populate_ms=%.1f\n", populate_ms);
        printf("dense_huge_ms=%.1f\n", cp.reached_ms);
        print_usage("", &u);
        printf("updates_per_s=%.0f\n", updates);
        printf("mismatches=%" PRIu64 "\n", bad);
        munmap(p, len);
        free(dense);
        return bad ? 1 : 0;
}

/* ---- fork latency ---------------------------------------------------------- */

/*
 * Not a BENCH.md S-case: write all of `len` (hugepaged makes it huge, as the
 * --advise baselines ask the kernel), then fork --forks children, one at a
 * time, each writing one byte to a pipe and exiting. Per fork: the parent's
 * fork() return (fork_), the child running its first line after fork()
 * returned in it (ready_: under hugepaged-run that includes its handshake),
 * and the whole fork, exit and reap (cycle_).
 */
static int cmd_fork(size_t len)
{
        unsigned n = opt.forks;
        uint64_t *fork_ns = calloc(n, sizeof(uint64_t)), *ready_ns = calloc(n, sizeof(uint64_t)),
                 *cycle_ns = calloc(n, sizeof(uint64_t)), total = 0, bad = 0;
        int pfd[2];
        struct usage u;
        char *p = map_anon(len);

        if (!fork_ns || !ready_ns || !cycle_ns)
                die("out of memory");
        if (pipe2(pfd, O_CLOEXEC) < 0)
                die("pipe: %s", strerror(errno));
        for (uint64_t pg = 0; pg < len / PAGE; pg++)
                touch(p, pg);
        want_huge(p, len);
        usage_of(p, len, &u);
        for (unsigned i = 0; i < n; i++) {
                char c = 0;
                int st;
                uint64_t t0 = now_ns();
                pid_t pid = fork();
                if (pid < 0)
                        die("fork: %s", strerror(errno));
                if (pid == 0) {
                        (void) !write(pfd[1], "x", 1);
                        _exit(0);
                }
                uint64_t t1 = now_ns();
                if (read(pfd[0], &c, 1) != 1)
                        die("read from child: %s", strerror(errno));
                uint64_t t2 = now_ns();
                if (waitpid(pid, &st, 0) < 0)
                        die("waitpid: %s", strerror(errno));
                uint64_t t3 = now_ns();
                fork_ns[i] = t1 - t0;
                ready_ns[i] = t2 - t0;
                cycle_ns[i] = t3 - t0;
                total += t3 - t0;
        }
        for (uint64_t pg = 0; pg < len / PAGE; pg++)
                bad += check_touched(p, pg);
        print_header("fork", p, len);
        print_usage("", &u);
        printf("forks=%u\n", n);
        qsort(fork_ns, n, sizeof(uint64_t), cmp_u64);
        qsort(ready_ns, n, sizeof(uint64_t), cmp_u64);
        qsort(cycle_ns, n, sizeof(uint64_t), cmp_u64);
        printf("fork_p50_ns=%" PRIu64 "\nfork_p99_ns=%" PRIu64 "\n", quantile(fork_ns, n, 0.5),
               quantile(fork_ns, n, 0.99));
        printf("ready_p50_ns=%" PRIu64 "\nready_p99_ns=%" PRIu64 "\n", quantile(ready_ns, n, 0.5),
               quantile(ready_ns, n, 0.99));
        printf("cycle_p50_ns=%" PRIu64 "\ncycle_p99_ns=%" PRIu64 "\n", quantile(cycle_ns, n, 0.5),
               quantile(cycle_ns, n, 0.99));
        printf("children_per_s=%.0f\n", total ? (double)n * 1e9 / (double)total : 0.0);
        printf("mismatches=%" PRIu64 "\n", bad);
        free(fork_ns);
        free(ready_ns);
        free(cycle_ns);
        munmap(p, len);
        return bad ? 1 : 0;
}

/* ---- children (forkfit, latency, scale) ----------------------------------- */

/* Start this program again with `args` (exec, not just a fork): under
 * hugepaged-run each child is then a client of its own. */
static pid_t spawn(char *const args[], int keep_fd1, int keep_fd2)
{
        pid_t pid = fork();

        if (pid < 0)
                die("fork: %s", strerror(errno));
        if (pid == 0) {
                if (keep_fd1 >= 0)
                        fcntl(keep_fd1, F_SETFD, 0);
                if (keep_fd2 >= 0)
                        fcntl(keep_fd2, F_SETFD, 0);
                execv(self_exe, args);
                _exit(127);
        }
        return pid;
}

static void fmt_args(char (*buf)[32], char **args, int *n, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void fmt_args(char (*buf)[32], char **args, int *n, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf[*n], sizeof(buf[*n]), fmt, ap);
        va_end(ap);
        args[*n] = buf[*n];
        (*n)++;
}

/* ---- S6 forkfit ----------------------------------------------------------- */

/* Child: map len, touch 1 page per region, report on fd, wait to be killed. */
static int cmd_forkfit_child(size_t len, int fd)
{
        /* the cgroup's OOM killer must pick a child, never the parent that
         * counts them (raising one's own score needs no privilege) */
        int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (adj >= 0) {
                if (write(adj, "1000", 4) < 0) {
                        /* the parent may be picked instead: the run then ends early */
                }
                close(adj);
        }
        char *p = map_anon(len);

        for (uint64_t r = 0; r < len / REGION; r++)
                touch(p, r * REGION_PAGES);
        if (write(fd, "k", 1) != 1)
                _exit(3);
        for (;;)
                pause();
}

/*
 * S6: start children one after another, each mapping len and touching one
 * page per region, until one of them dies (the cgroup's OOM killer) or a
 * child does not finish within child_timeout_s, or max_children are alive.
 * The runner puts this process into a memory-limited cgroup first.
 */
static int cmd_forkfit(size_t len)
{
        pid_t *kids = calloc(opt.max_children, sizeof(*kids));
        unsigned ok = 0;
        const char *why = "max_children";
        uint64_t t0 = now_ns();

        if (!kids)
                die("out of memory");
        for (unsigned i = 0; i < opt.max_children; i++) {
                int pfd[2];
                char buf[8][32], *args[9];
                int n = 0;

                if (pipe2(pfd, O_CLOEXEC) < 0)
                        die("pipe: %s", strerror(errno));
                fmt_args(buf, args, &n, "hp-bench");
                fmt_args(buf, args, &n, "--advise=%s", advise_name(opt.advise));
                fmt_args(buf, args, &n, "forkfit-child");
                fmt_args(buf, args, &n, "%zu", len);
                fmt_args(buf, args, &n, "%d", pfd[1]);
                args[n] = NULL;
                kids[i] = spawn(args, pfd[1], -1);
                close(pfd[1]);

                struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
                int r = poll(&pf, 1, (int)(opt.child_timeout_s * 1000));
                char c;
                bool done = r > 0 && read(pfd[0], &c, 1) == 1;
                close(pfd[0]);
                if (!done) {
                        why = r == 0 ? "child_timeout" : "child_died";
                        break;
                }
                /* an earlier child killed meanwhile ends the run as well */
                int st;
                pid_t dead = waitpid(-1, &st, WNOHANG);
                if (dead > 0) {
                        why = "child_died";
                        break;
                }
                ok++;
        }
        double ms = ms_since(t0);
        for (unsigned i = 0; i < opt.max_children; i++)
                if (kids[i] > 0)
                        kill(kids[i], SIGKILL);
        while (wait(NULL) > 0)
                ;
        printf("cmd=forkfit\nadvise=%s\npid=%d\nsize=%zu\n", advise_name(opt.advise), (int)getpid(), len);
        for (unsigned i = 0; i < opt.max_children; i++)
                if (kids[i] > 0)
                        printf("child_pid=%d\n", (int)kids[i]);
        printf("children_ok=%u\n", ok);
        printf("max_children=%u\n", opt.max_children);
        printf("stopped_by=%s\n", why);
        printf("forkfit_ms=%.1f\n", ms);
        free(kids);
        return 0;
}

/* ---- S7 latency ------------------------------------------------------------ */

struct lat_thread {
        pthread_t t;
        char *base;             /* this thread's slice */
        size_t len;
        uint64_t *samples;
        size_t n;
        pthread_barrier_t *go;
};

static int lat_uffd = -1;
static char *lat_zero;

/* Blocking: read(2) sleeps until a fault arrives; busy: a non-blocking
 * read(2) spins. Stopped with pthread_cancel (read is a cancellation point). */
static void *lat_handler(void *arg)
{
        struct uffd_msg msg[16];

        (void)arg;
        for (;;) {
                ssize_t n = read(lat_uffd, msg, sizeof(msg));
                if (n <= 0) {
                        pthread_testcancel();
                        continue;
                }
                for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++) {
                        if (msg[i].event != UFFD_EVENT_PAGEFAULT)
                                continue;
                        struct uffdio_copy cp = {
                                .dst = msg[i].arg.pagefault.address & ~(PAGE - 1),
                                .src = (uint64_t)(uintptr_t)lat_zero,
                                .len = PAGE,
                        };
                        if (ioctl(lat_uffd, UFFDIO_COPY, &cp) < 0 && errno != EEXIST) {
                                struct uffdio_range wr = { .start = cp.dst, .len = PAGE };
                                ioctl(lat_uffd, UFFDIO_WAKE, &wr);
                        }
                }
        }
        return NULL;
}

/* Floor: an in-process handler thread (read + UFFDIO_COPY, nothing else). */
static pthread_t lat_floor_start(char *p, size_t len, bool busy)
{
        pthread_t t;

        lat_zero = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        lat_uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | (busy ? O_NONBLOCK : 0));
        if (lat_uffd < 0)
                die("userfaultfd: %s (needs root or vm.unprivileged_userfaultfd=1)", strerror(errno));
        struct uffdio_api api = { .api = UFFD_API };
        if (ioctl(lat_uffd, UFFDIO_API, &api) < 0)
                die("UFFDIO_API: %s", strerror(errno));
        struct uffdio_register reg = { .range = { .start = (uintptr_t)p, .len = len },
                                       .mode = UFFDIO_REGISTER_MODE_MISSING };
        if (ioctl(lat_uffd, UFFDIO_REGISTER, &reg) < 0)
                die("UFFDIO_REGISTER: %s", strerror(errno));
        if (pthread_create(&t, NULL, lat_handler, NULL) != 0)
                die("pthread_create failed");
        return t;
}

/*
 * Touch per_region_lat pages per region at `stride` pages apart, regions in
 * a random order and the pages of each too: never sequential (every served
 * fault is one 4 KiB page) and below the promotion threshold.
 */
static void *lat_worker(void *arg)
{
        struct lat_thread *w = arg;
        uint64_t regions = w->len / REGION, per = opt.per_region_lat, n = regions * per;
        uint32_t *order = malloc(n * sizeof(*order));

        w->samples = malloc(n * sizeof(*w->samples));
        if (!order || !w->samples)
                die("out of memory");
        for (uint64_t r = 0, k = 0; r < regions; r++)
                for (uint64_t i = 0; i < per; i++)
                        order[k++] = (uint32_t)(r * REGION_PAGES + (i * opt.stride) % REGION_PAGES);
        shuffle_u32(order, n, opt.seed + (uintptr_t)w->base);
        pthread_barrier_wait(w->go);
        for (uint64_t i = 0; i < n; i++) {
                uint64_t t0 = now_ns();
                touch(w->base, order[i]);
                w->samples[w->n++] = now_ns() - t0;
        }
        free(order);
        return NULL;
}

/* One client: `threads` threads faulting their own slices of one mapping. */
static size_t latency_one(size_t len_per_thread, uint64_t **ret)
{
        struct lat_thread *w = calloc(opt.threads, sizeof(*w));
        size_t len = len_per_thread * opt.threads, total = 0;
        pthread_barrier_t go;
        pthread_t handler = 0;
        bool floor = strncmp(opt.fault_mode, "floor", 5) == 0;

        if (!w)
                die("out of memory");
        prewarm(len);
        char *p = map_anon(len);
        if (floor)
                handler = lat_floor_start(p, len, strcmp(opt.fault_mode, "floor-busy") == 0);
        pthread_barrier_init(&go, NULL, opt.threads);
        for (unsigned i = 0; i < opt.threads; i++) {
                w[i] = (struct lat_thread){ .base = p + i * len_per_thread, .len = len_per_thread, .go = &go };
                if (pthread_create(&w[i].t, NULL, lat_worker, &w[i]) != 0)
                        die("pthread_create failed");
        }
        for (unsigned i = 0; i < opt.threads; i++) {
                pthread_join(w[i].t, NULL);
                total += w[i].n;
        }
        uint64_t *all = malloc(total * sizeof(*all)), bad = 0;
        if (!all)
                die("out of memory");
        for (unsigned i = 0, k = 0; i < opt.threads; i++) {
                memcpy(all + k, w[i].samples, w[i].n * sizeof(*all));
                k += (unsigned)w[i].n;
                free(w[i].samples);
        }
        if (floor) {
                pthread_cancel(handler);
                pthread_join(handler, NULL);
        }
        for (unsigned i = 0; i < opt.threads; i++)
                for (uint64_t r = 0; r < len_per_thread / REGION; r++)
                        bad += check_touched(p + i * len_per_thread, r * REGION_PAGES);
        if (bad)
                die("%" PRIu64 " touched pages lost their data", bad);
        munmap(p, len);
        free(w);
        *ret = all;
        return total;
}

/* Child of a many-client latency run: wait for the start signal on go_fd,
 * fault, write the samples to out_fd. */
static int cmd_latency_child(size_t len_per_thread, int go_fd, int out_fd)
{
        char c;
        uint64_t *v;

        if (read(go_fd, &c, 1) < 0)
                die("start signal: %s", strerror(errno));
        size_t n = latency_one(len_per_thread, &v);
        if (pwrite(out_fd, v, n * sizeof(*v), 0) != (ssize_t)(n * sizeof(*v)))
                die("write samples: %s", strerror(errno));
        return 0;
}

static int cmd_latency(size_t len_per_thread)
{
        uint64_t *v = NULL;
        size_t n = 0;

        if (opt.clients <= 1) {
                n = latency_one(len_per_thread, &v);
        } else {
                int go[2];
                int *out = calloc(opt.clients, sizeof(*out));
                pid_t *kids = calloc(opt.clients, sizeof(*kids));

                if (!out || !kids || pipe2(go, O_CLOEXEC) < 0)
                        die("out of memory or pipes");
                for (unsigned i = 0; i < opt.clients; i++) {
                        char buf[10][32], *args[11];
                        int k = 0;

                        out[i] = memfd_create("hp-bench-samples", MFD_CLOEXEC);
                        if (out[i] < 0)
                                die("memfd_create: %s", strerror(errno));
                        fmt_args(buf, args, &k, "hp-bench");
                        fmt_args(buf, args, &k, "--advise=%s", advise_name(opt.advise));
                        fmt_args(buf, args, &k, "--threads=%u", opt.threads);
                        fmt_args(buf, args, &k, "--fault-mode=%s", opt.fault_mode);
                        fmt_args(buf, args, &k, "--seed=%" PRIu64, opt.seed + i);
                        fmt_args(buf, args, &k, "latency-child");
                        fmt_args(buf, args, &k, "%zu", len_per_thread);
                        fmt_args(buf, args, &k, "%d", go[0]);
                        fmt_args(buf, args, &k, "%d", out[i]);
                        args[k] = NULL;
                        kids[i] = spawn(args, go[0], out[i]);
                }
                close(go[0]);
                sleep_ms(200 + 10.0 * opt.clients);     /* children connect and map */
                close(go[1]);                           /* go */
                for (unsigned i = 0; i < opt.clients; i++) {
                        int st;
                        if (waitpid(kids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                                die("latency child %d failed", (int)kids[i]);
                        off_t sz = lseek(out[i], 0, SEEK_END);
                        v = realloc(v, (n + (size_t)sz / sizeof(*v)) * sizeof(*v));
                        if (!v || pread(out[i], v + n, (size_t)sz, 0) != sz)
                                die("read samples: %s", strerror(errno));
                        n += (size_t)sz / sizeof(*v);
                        close(out[i]);
                        printf("child_pid=%d\n", (int)kids[i]);
                }
                free(out);
                free(kids);
        }
        printf("cmd=latency\nadvise=%s\npid=%d\n", advise_name(opt.advise), (int)getpid());
        printf("fault_mode=%s\nthreads=%u\nclients=%u\n", opt.fault_mode, opt.threads, opt.clients);
        print_latency("lat_", v, n);
        free(v);
        return 0;
}

/* ---- shmem (S14) ---------------------------------------------------------- */

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

/*
 * Anonymous shared memory. One write fault every 16th page of `len` (32 per
 * region, under hugepaged's default threshold of 64) is timed: the kernel's
 * 4 KiB shmem fault, or under hugepaged-run a UFFDIO_CONTINUE from the
 * region's reservation in the daemon's file (a region's first fault also
 * makes the reservation). Then, for 32 regions of a shared mapping and of a
 * private anonymous one (MAP_STACK keeps the shim off it), 63 pages of each
 * region are written (under the threshold: the daemon leaves them) and
 * MADV_COLLAPSE on the region is timed: in place in the daemon's file, a
 * copy into a new huge page for the anonymous memory (and EINVAL for
 * shared memory the kernel owns while shmem_enabled is never).
 */
static int cmd_shmem(size_t len)
{
        size_t n = len / PAGE / 16, k = 0;
        uint64_t *lat = calloc(n ? n : 1, sizeof(*lat));
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

        if (!lat || p == MAP_FAILED)
                die("shmem: mmap %zu: %s", len, strerror(errno));
        print_header("shmem", p, len);
        for (uint64_t pg = 0; pg < len / PAGE; pg += 16) {
                uint64_t t0 = now_ns();
                touch(p, pg);
                lat[k++] = now_ns() - t0;
        }
        uint64_t bad = 0;
        for (uint64_t pg = 0; pg < len / PAGE; pg += 16)
                bad += check_touched(p, pg);
        print_latency("shfault_", lat, k);
        munmap(p, len);

        const size_t regions = 32, clen = regions * REGION;
        char *sh = mmap(NULL, clen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        char *raw = mmap(NULL, clen + REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (sh == MAP_FAILED || raw == MAP_FAILED)
                die("shmem: mmap: %s", strerror(errno));
        char *an = (char *)(((uintptr_t)raw + REGION - 1) & ~(uintptr_t)(REGION - 1));
        advise(an, clen, MADV_NOHUGEPAGE);      /* the kernel must not make it huge at the faults */
        uint64_t *cs = calloc(regions, sizeof(*cs)), *ca = calloc(regions, sizeof(*ca));
        size_t ns = 0, na = 0;
        int es = 0, ea = 0;
        for (size_t r = 0; r < regions; r++)
                for (uint64_t pg = 0; pg < 63; pg++) {
                        touch(sh, r * REGION_PAGES + pg * 8);
                        touch(an, r * REGION_PAGES + pg * 8);
                }
        advise(an, clen, MADV_HUGEPAGE);
        for (size_t r = 0; r < regions; r++) {
                uint64_t t0 = now_ns();
                if (madvise(sh + r * REGION, REGION, MADV_COLLAPSE) == 0)
                        cs[ns++] = now_ns() - t0;
                else
                        es = errno;
                t0 = now_ns();
                if (madvise(an + r * REGION, REGION, MADV_COLLAPSE) == 0)
                        ca[na++] = now_ns() - t0;
                else
                        ea = errno;
        }
        for (size_t r = 0; r < regions; r++)
                for (uint64_t pg = 0; pg < 63; pg++) {
                        bad += check_touched(sh, r * REGION_PAGES + pg * 8);
                        bad += check_touched(an, r * REGION_PAGES + pg * 8);
                }
        printf("collapse_shared_ok=%zu\ncollapse_shared_errno=%d\ncollapse_anon_ok=%zu\ncollapse_anon_errno=%d\n",
               ns, es, na, ea);
        if (ns)
                print_latency("collapse_shared_", cs, ns);
        if (na)
                print_latency("collapse_anon_", ca, na);
        printf("mismatches=%" PRIu64 "\n", bad);
        return bad ? 1 : 0;
}

/* ---- S8 hugetlb ------------------------------------------------------------ */

static int cmd_hugetlb(size_t len)
{
        uint64_t n = len / REGION, *v = malloc(n * sizeof(*v));
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);

        if (p == MAP_FAILED)
                die("mmap MAP_HUGETLB %zu bytes: %s (are enough huge pages reserved?)", len, strerror(errno));
        if (!v)
                die("out of memory");
        uint64_t t0 = now_ns();
        for (uint64_t i = 0; i < n; i++) {
                uint64_t t = now_ns();
                touch(p, i * REGION_PAGES);
                v[i] = now_ns() - t;
        }
        double ms = ms_since(t0);
        printf("cmd=hugetlb\npid=%d\nsize=%zu\npopulate_ms=%.1f\n", (int)getpid(), len, ms);
        print_latency("fault2m_", v, n);
        munmap(p, len);
        free(v);
        return 0;
}

/* ---- S9 scale --------------------------------------------------------------- */

/*
 * Child: `ranges` mappings of 4 MiB (each holds at least one aligned 2 MiB
 * region); every 4th gets 80 random pages of that region (above the
 * default threshold: promoted), the others 4 pages. Writes its largest
 * fault time (ns, 8 bytes) to out_fd, then waits for go_fd to close.
 */
static int cmd_scale_child(int go_fd, int out_fd)
{
        uint64_t s = rng_init(opt.seed), worst = 0, faults = 0;
        const size_t len = 2 * REGION;
        char c;

        for (unsigned i = 0; i < opt.ranges; i++) {
                char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED)
                        die("mmap: %s", strerror(errno));
                char *reg = (char *)(((uintptr_t)p + REGION - 1) & ~(REGION - 1));
                unsigned want = i % 4 == 0 ? 80 : 4;
                uint8_t seen[REGION_PAGES] = { 0 };
                for (unsigned k = 0; k < want;) {
                        unsigned pg = (unsigned)rng_below(&s, REGION_PAGES);
                        if (seen[pg])
                                continue;
                        seen[pg] = 1;
                        k++;
                        uint64_t t0 = now_ns();
                        touch(reg, pg);
                        uint64_t dt = now_ns() - t0;
                        worst = dt > worst ? dt : worst;
                        faults++;
                }
        }
        uint64_t rep[2] = { worst, faults };
        if (write(out_fd, rep, sizeof(rep)) != sizeof(rep))
                die("write: %s", strerror(errno));
        close(out_fd);
        while (read(go_fd, &c, 1) < 0 && errno == EINTR)
                ;
        return 0;
}

static uint64_t proc_rss_kb(int pid, const char *key)
{
        char path[64], line[256];
        uint64_t v = 0;

        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, strlen(key)) == 0)
                        v = strtoull(line + strlen(key), NULL, 10);
        fclose(f);
        return v;
}

static int cmd_scale(void)
{
        int hold[2];
        int *out = calloc(opt.clients, sizeof(*out));
        pid_t *kids = calloc(opt.clients, sizeof(*kids));
        uint64_t worst = 0, faults = 0, t0 = now_ns();

        if (!out || !kids || pipe2(hold, O_CLOEXEC) < 0)
                die("out of memory or pipes");
        for (unsigned i = 0; i < opt.clients; i++) {
                int o[2];
                char buf[8][32], *args[9];
                int k = 0;

                if (pipe2(o, O_CLOEXEC) < 0)
                        die("pipe: %s", strerror(errno));
                fmt_args(buf, args, &k, "hp-bench");
                fmt_args(buf, args, &k, "--ranges=%u", opt.ranges);
                fmt_args(buf, args, &k, "--seed=%" PRIu64, opt.seed + i);
                fmt_args(buf, args, &k, "scale-child");
                fmt_args(buf, args, &k, "%d", hold[0]);
                fmt_args(buf, args, &k, "%d", o[1]);
                args[k] = NULL;
                kids[i] = spawn(args, hold[0], o[1]);
                close(o[1]);
                out[i] = o[0];
        }
        close(hold[0]);
        for (unsigned i = 0; i < opt.clients; i++) {
                uint64_t rep[2];
                struct pollfd pf = { .fd = out[i], .events = POLLIN };
                if (poll(&pf, 1, (int)(opt.child_timeout_s * 1000)) <= 0 || read(out[i], rep, sizeof(rep)) != sizeof(rep))
                        die("scale child %d did not finish", (int)kids[i]);
                worst = rep[0] > worst ? rep[0] : worst;
                faults += rep[1];
                close(out[i]);
        }
        double ms = ms_since(t0);
        sleep_ms(500);  /* promotions queued by the last faults land */
        uint64_t rss = opt.daemon_pid ? proc_rss_kb(opt.daemon_pid, "VmRSS:") : 0;
        uint64_t hwm = opt.daemon_pid ? proc_rss_kb(opt.daemon_pid, "VmHWM:") : 0;
        close(hold[1]);
        for (unsigned i = 0; i < opt.clients; i++)
                waitpid(kids[i], NULL, 0);
        printf("cmd=scale\npid=%d\nclients=%u\nranges=%u\n", (int)getpid(), opt.clients, opt.ranges);
        for (unsigned i = 0; i < opt.clients; i++)
                printf("child_pid=%d\n", (int)kids[i]);
        printf("touches=%" PRIu64 "\n", faults);
        printf("worst_fault_ns=%" PRIu64 "\n", worst);
        printf("run_ms=%.1f\n", ms);
        printf("daemon_rss_kb=%" PRIu64 "\n", rss);
        printf("daemon_hwm_kb=%" PRIu64 "\n", hwm);
        free(out);
        free(kids);
        return 0;
}

/* ---- command line ------------------------------------------------------------ */

static size_t parse_size(const char *s)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        unsigned shift = 0;

        if (errno || end == s)
                die("bad size '%s'", s);
        switch (*end) {
        case 'k': case 'K': shift = 10; end++; break;
        case 'm': case 'M': shift = 20; end++; break;
        case 'g': case 'G': shift = 30; end++; break;
        }
        if (*end || v == 0 || v > (1ull << 46) >> shift)
                die("bad size '%s' (1 .. 64 TiB, with K, M or G)", s);
        v <<= shift;
        if (v % REGION)
                die("size '%s' is not a multiple of 2 MiB", s);
        return (size_t)v;
}

static double parse_double(const char *name, const char *s, double lo, double hi)
{
        char *end;
        double v = strtod(s, &end);

        if (end == s || *end || !(v >= lo && v <= hi))
                die("--%s: '%s' is not a number in %g..%g", name, s, lo, hi);
        return v;
}

static unsigned parse_uint(const char *name, const char *s, unsigned lo, unsigned hi)
{
        return (unsigned)parse_double(name, s, lo, hi);
}

static void help(void)
{
        printf("Usage: hp-bench [OPTIONS] COMMAND [ARGS]\n"
               "The hugepaged benchmark workload (BENCH.md). Run by bench/run.sh.\n\n"
               "Commands:\n"
               "  warm SIZE            touch and free SIZE once (the host's first-touch cost)\n"
               "  sparse SIZE          S1/S1r: --per-region N pages of every 2 MiB region\n"
               "                       (0: a random 1..--random-max)\n"
               "  dense-seq SIZE       S2/S5: write every page in order, then random updates\n"
               "  dense-rand SIZE      S3: the same with pages first touched in random order\n"
               "  mixed SIZE           S4: every --dense-every'th region dense, the rest 1 page\n"
               "  forkfit SIZE         S6: children map SIZE, 1 page/region, until one dies\n"
               "  latency SIZE         S7: timed 4 KiB first touches; SIZE per thread\n"
               "  hugetlb SIZE         S8: MAP_HUGETLB first touch, timed per 2 MiB\n"
               "  scale                S9: --clients processes x --ranges mappings\n"
               "  split SIZE           write SIZE, wait for huge pages, split each (for tests)\n"
               "  fork SIZE            write SIZE, then time --forks forks of children that exit at once\n\n"
               "Options:\n"
               "  --advise none|never|always|khugepaged   the kernel baseline (default none)\n"
               "  --updates SEC        random-update phase (default 10)\n"
               "  --wait SEC           bound for waiting on huge pages (default 30)\n"
               "  --cover PCT          coverage whose time dense reports (default 99)\n"
               "  --per-region N, --random-max N, --dense-every N\n"
               "  --threads N, --clients N, --stride N, --lat-pages N\n"
               "  --fault-mode plain|floor-block|floor-busy   latency: who serves the faults\n"
               "  --ranges N, --daemon-pid PID, --max-children N, --child-timeout SEC, --forks N\n"
               "  --seed N\n"
               "  --no-prewarm         do not touch and free the memory right before timing\n");
}

int main(int argc, char **argv)
{
        enum { O_ADVISE = 0x100, O_UPDATES, O_WAIT, O_COVER, O_PER_REGION, O_RANDOM_MAX, O_DENSE_EVERY,
               O_THREADS, O_CLIENTS, O_STRIDE, O_LAT_PAGES, O_FAULT_MODE, O_RANGES, O_DAEMON_PID,
               O_MAX_CHILDREN, O_CHILD_TIMEOUT, O_SEED, O_NO_PREWARM, O_FORKS };
        static const struct option opts[] = {
                { "advise", required_argument, NULL, O_ADVISE },
                { "updates", required_argument, NULL, O_UPDATES },
                { "wait", required_argument, NULL, O_WAIT },
                { "cover", required_argument, NULL, O_COVER },
                { "per-region", required_argument, NULL, O_PER_REGION },
                { "random-max", required_argument, NULL, O_RANDOM_MAX },
                { "dense-every", required_argument, NULL, O_DENSE_EVERY },
                { "threads", required_argument, NULL, O_THREADS },
                { "clients", required_argument, NULL, O_CLIENTS },
                { "stride", required_argument, NULL, O_STRIDE },
                { "lat-pages", required_argument, NULL, O_LAT_PAGES },
                { "fault-mode", required_argument, NULL, O_FAULT_MODE },
                { "ranges", required_argument, NULL, O_RANGES },
                { "daemon-pid", required_argument, NULL, O_DAEMON_PID },
                { "max-children", required_argument, NULL, O_MAX_CHILDREN },
                { "child-timeout", required_argument, NULL, O_CHILD_TIMEOUT },
                { "seed", required_argument, NULL, O_SEED },
                { "no-prewarm", no_argument, NULL, O_NO_PREWARM },
                { "forks", required_argument, NULL, O_FORKS },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c;

        ssize_t sl = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
        if (sl <= 0)
                die("readlink /proc/self/exe: %s", strerror(errno));
        self_exe[sl] = '\0';
        while ((c = getopt_long(argc, argv, "+h", opts, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case O_ADVISE:
                        if (!strcmp(optarg, "none")) opt.advise = ADVISE_NONE;
                        else if (!strcmp(optarg, "never")) opt.advise = ADVISE_NEVER;
                        else if (!strcmp(optarg, "always")) opt.advise = ADVISE_ALWAYS;
                        else if (!strcmp(optarg, "khugepaged")) opt.advise = ADVISE_KHUGEPAGED;
                        else die("--advise: '%s' is not none, never, always or khugepaged", optarg);
                        break;
                case O_UPDATES: opt.updates_s = parse_double("updates", optarg, 0, 3600); break;
                case O_WAIT: opt.wait_s = parse_double("wait", optarg, 0, 3600); break;
                case O_COVER: opt.cover_want = parse_double("cover", optarg, 1, 100) / 100; break;
                case O_PER_REGION: opt.per_region = parse_uint("per-region", optarg, 0, REGION_PAGES); break;
                case O_RANDOM_MAX: opt.random_max = parse_uint("random-max", optarg, 1, REGION_PAGES); break;
                case O_DENSE_EVERY: opt.dense_every = parse_uint("dense-every", optarg, 1, 1u << 20); break;
                case O_THREADS: opt.threads = parse_uint("threads", optarg, 1, 1024); break;
                case O_CLIENTS: opt.clients = parse_uint("clients", optarg, 1, 4096); break;
                case O_STRIDE: opt.stride = parse_uint("stride", optarg, 2, REGION_PAGES); break;
                case O_LAT_PAGES: opt.per_region_lat = parse_uint("lat-pages", optarg, 1, REGION_PAGES / 2); break;
                case O_FAULT_MODE:
                        if (strcmp(optarg, "plain") && strcmp(optarg, "floor-block") && strcmp(optarg, "floor-busy"))
                                die("--fault-mode: '%s' is not plain, floor-block or floor-busy", optarg);
                        opt.fault_mode = optarg;
                        break;
                case O_RANGES: opt.ranges = parse_uint("ranges", optarg, 1, 4096); break;
                case O_DAEMON_PID: opt.daemon_pid = (int)parse_uint("daemon-pid", optarg, 1, 1u << 22); break;
                case O_MAX_CHILDREN: opt.max_children = parse_uint("max-children", optarg, 1, 4096); break;
                case O_CHILD_TIMEOUT: opt.child_timeout_s = parse_double("child-timeout", optarg, 0.1, 3600); break;
                case O_SEED: opt.seed = (uint64_t)parse_double("seed", optarg, 0, 1e15); break;
                case O_NO_PREWARM: opt.prewarm = false; break;
                case O_FORKS: opt.forks = parse_uint("forks", optarg, 1, 100000); break;
                default:
                        return 2;
                }
        }
        if (optind >= argc)
                die("no command (try --help)");
        const char *cmd = argv[optind];
        const char *a1 = optind + 1 < argc ? argv[optind + 1] : NULL;
        const char *a2 = optind + 2 < argc ? argv[optind + 2] : NULL;
        const char *a3 = optind + 3 < argc ? argv[optind + 3] : NULL;

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (!strcmp(cmd, "scale"))
                return cmd_scale();
        if (!strcmp(cmd, "scale-child") && a2)
                return cmd_scale_child(atoi(a1), atoi(a2));
        if (!a1)
                die("%s: missing SIZE", cmd);
        size_t len = parse_size(a1);
        if (!strcmp(cmd, "warm"))
                return cmd_warm(len);
        if (!strcmp(cmd, "sparse"))
                return cmd_sparse(len);
        if (!strcmp(cmd, "dense-seq") || !strcmp(cmd, "dense-rand"))
                return cmd_dense(len, !strcmp(cmd, "dense-rand"));
        if (!strcmp(cmd, "mixed"))
                return cmd_mixed(len);
        if (!strcmp(cmd, "split"))
                return cmd_split(len);
        if (!strcmp(cmd, "fork"))
                return cmd_fork(len);
        if (!strcmp(cmd, "forkfit"))
                return cmd_forkfit(len);
        if (!strcmp(cmd, "forkfit-child") && a2)
                return cmd_forkfit_child(len, atoi(a2));
        if (!strcmp(cmd, "latency"))
                return cmd_latency(len);
        if (!strcmp(cmd, "latency-child") && a3)
                return cmd_latency_child(len, atoi(a2), atoi(a3));
        if (!strcmp(cmd, "hugetlb"))
                return cmd_hugetlb(len);
        if (!strcmp(cmd, "shmem"))
                return cmd_shmem(len);
        die("unknown command '%s' (try --help)", cmd);
}
