/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hugetlb.c: the hugetlb backend (see hugetlb.h): registration of
 * MAP_HUGETLB ranges, their faults (one 2 MiB UFFDIO_COPY from the daemon's
 * zero source each), and the pool of 2 MiB huge pages.
 *
 * Threads: everything that touches clients runs on the main thread. Every
 * change of vm.nr_hugepages runs on one pool thread, in order: growing the
 * pool, pre-touching the pages it added (the first touch of guest memory the
 * host never backed costs milliseconds per 2 MiB, and belongs here, not on a
 * client's fault) and shrinking it. FILL_THREADS fill threads copy pages
 * ahead of a sequential stream of faults (two faults in consecutive pages),
 * up to HUGETLB_FILL_AHEAD pages past the last fault and within the range:
 * a 2 MiB copy costs more than the kernel's own clear, so the copy must not
 * be on the fault path, and a stream then finds most of its pages there.
 * The pages are the client's anyway (the pool holds them for its ranges).
 * A fault in a page a fill thread has is left to that copy, which wakes the
 * thread; a failed fill wakes it too, and the main thread serves the retry.
 * Jobs carry a client id (and the fill jobs a reference to the client's
 * fds), never a client; results come back through lists and an eventfd.
 *
 * Kernel behaviour relied on (6.18):
 * - UFFDIO_COPY into hugetlb must be 2 MiB aligned and sized; it allocates
 *   the page from the pool (using the mapping's reservation if it has one).
 * - With no free huge page, UFFDIO_COPY fails -EEXIST (not -ENOMEM): an
 *   -EEXIST while the pool has nothing available means "grow the pool".
 * - Lowering nr_hugepages below the pages in use or reserved turns those into
 *   surplus pages, freed when released: shrinking never takes a page away.
 * - fallocate() of a MFD_HUGETLB memfd allocates and zeroes pages that are
 *   free and not reserved; closing the memfd gives them back to the pool.
 * What the daemon added survives a crash: every change of the pool is
 * recorded in hugetlb-pool next to the listening socket (the runtime
 * directory: gone at reboot, kept across restarts), as the size the first
 * daemon found and the size last written. A daemon that starts and finds the
 * pool still at the size written last takes the recorded size as its own
 * base, so the pages a killed daemon added go back once nobody is charged
 * for them; if someone changed the pool since, it is left alone.
 * Must never: block the main thread on the pool, let a client's charge
 * exceed its budget, or take the pool below the size it found at start (or
 * inherited as above).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "manager.h"
#include "util.h"

#define HUGETLB_SYSFS "/sys/kernel/mm/hugepages/hugepages-2048kB/"
#define JOBS_PER_CLIENT 4       /* requests a client may have waiting on the pool thread */
#define FILL_THREADS 2

/* A page to fill ahead of a stream: one 2 MiB UFFDIO_COPY. */
struct fill_job {
        struct fill_job *next;
        uint64_t client_id;
        struct client_fds *fds;
        const void *src;
        uint64_t addr;
        int result;
};

enum job_kind {
        JOB_RESERVE,    /* have `want` pages available, pre-touch what was added; reply */
        JOB_FAULT,      /* have one page available for a fault waiting at addr */
        JOB_SHRINK,     /* give back what the daemon added beyond `charged` */
};

struct pool_job {
        struct pool_job *next;
        enum job_kind kind;
        uint64_t client_id;
        uint32_t seq;
        uint64_t addr;
        uint64_t want;
        uint64_t charged;
        uint64_t budget;
        uint64_t t0;            /* FAULT: when the fault was read */
        uint64_t got;           /* pages added by this job */
        int result;
        char why[HP_ERROR_TEXT];
};

struct hugetlb_pool {
        struct manager *m;
        int nr_fd, free_fd, resv_fd, surplus_fd;
        uint64_t base;          /* nr_hugepages at start */
        uint64_t faults;        /* main thread */
        bool shrink_queued;     /* main thread */
        uint64_t fruitless_added, fruitless_charged;    /* main thread: last shrink that removed nothing */
        int efd;
        struct watch w_done;

        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct pool_job *queue, **queue_tail;   /* under lock */
        struct pool_job *done, **done_tail;     /* under lock */
        bool stop;                              /* under lock */
        uint64_t added;         /* under lock; written by the pool thread */
        uint64_t fault_hold;    /* under lock: pages grown for faults whose copy has not run yet */
        bool grew;              /* pool thread: the daemon changed the pool at least once */

        char *state_path;       /* hugetlb-pool in the socket's directory, or NULL */

        pthread_t fillers[FILL_THREADS];
        unsigned nfillers;
        pthread_cond_t fill_cond;
        struct fill_job *fills, **fills_tail;           /* under lock */
        struct fill_job *filled, **filled_tail;         /* under lock */
        uint64_t prefilled;     /* main thread */
};

/* ---- sysfs -------------------------------------------------------------------- */

static int read_u64(int fd, uint64_t *ret)
{
        char buf[32];
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
                return n < 0 ? -errno : -EIO;
        buf[n] = '\0';
        char *end;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 10);
        if (errno || end == buf)
                return -EIO;
        *ret = v;
        return 0;
}

static int write_u64(int fd, uint64_t v)
{
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", v);
        ssize_t w = pwrite(fd, buf, (size_t)n, 0);
        if (w < 0)
                return -errno;
        return w == n ? 0 : -EIO;
}

/* Free pages nobody has reserved: what an allocation can take now. */
static uint64_t pool_available(struct hugetlb_pool *p)
{
        uint64_t f = 0, r = 0;
        if (read_u64(p->free_fd, &f) < 0 || read_u64(p->resv_fd, &r) < 0)
                return 0;
        return f > r ? f - r : 0;
}

/* ---- the pool thread ---------------------------------------------------------- */

#define PRETOUCH_CHUNK 64                           /* pages per fallocate() */
#define PRETOUCH_MAX_NS (3000ull * 1000000ull)      /* the client waits: well within its timeout */

/* The host backs guest memory at its first touch (~3 ms per 2 MiB here, ~0.1
 * ms once backed): do it here, once, not in the client's faults. */
static void pretouch(uint64_t pages)
{
        _cleanup_close_ int fd = memfd_create("hugepaged-pretouch", MFD_HUGETLB | MFD_CLOEXEC);
        uint64_t t0 = now_ns();

        if (fd < 0 || ftruncate(fd, (off_t)(pages * HP_REGION_SIZE)) < 0)
                return;
        for (uint64_t i = 0; i < pages && now_ns() - t0 < PRETOUCH_MAX_NS; i += PRETOUCH_CHUNK) {
                uint64_t n = pages - i < PRETOUCH_CHUNK ? pages - i : PRETOUCH_CHUNK;
                /* -ENOSPC: someone took pages meanwhile; what was touched is touched */
                if (fallocate(fd, 0, (off_t)(i * HP_REGION_SIZE), (off_t)(n * HP_REGION_SIZE)) < 0)
                        break;
        }
}

/*
 * The persistent pool (nr_hugepages less surplus pages) is what the daemon
 * sets; what it added is how far that is above the size it found. Surplus
 * pages (in use when the pool shrank) go away by themselves when freed, so
 * the count is read back each time, never kept as a running sum.
 */
static int pool_persistent(struct hugetlb_pool *p, uint64_t *ret)
{
        uint64_t nr, surplus = 0;
        int r = read_u64(p->nr_fd, &nr);
        if (r < 0)
                return r;
        (void)read_u64(p->surplus_fd, &surplus);
        *ret = nr > surplus ? nr - surplus : 0;
        return 0;
}

/* Pool thread: record the base and the size just written (or, back at
 * the base, that nothing of ours is left). Best effort: logged once. */
static void state_save(struct hugetlb_pool *p, uint64_t persistent)
{
        static bool warned;

        if (!p->state_path)
                return;
        if (persistent <= p->base) {
                if (unlink(p->state_path) < 0 && errno != ENOENT && !warned) {
                        warned = true;
                        log_warning_errno(errno, "cannot remove %s: %m", p->state_path);
                }
                return;
        }
        char tmp[PATH_MAX], line[64];
        int n = snprintf(line, sizeof(line), "base %" PRIu64 " set %" PRIu64 "\n", p->base, persistent);
        if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", p->state_path) >= sizeof(tmp))
                return;
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, line, (size_t)n) != n || rename(tmp, p->state_path) < 0) {
                if (!warned) {
                        warned = true;
                        log_warning_errno(errno, "cannot record the hugetlb pool in %s: %m (pages added now "
                                          "are not given back if the daemon is killed)", p->state_path);
                }
                (void)unlink(tmp);
        }
}

/* At start: pages a daemon that did not exit cleanly added become ours to
 * give back, if the pool is still the size it wrote last. */
static void state_adopt(struct hugetlb_pool *p)
{
        char buf[64] = "";
        uint64_t base, set;

        if (!p->state_path)
                return;
        _cleanup_close_ int fd = open(p->state_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0 || sscanf(buf, "base %" SCNu64 " set %" SCNu64, &base, &set) != 2 || base >= set) {
                log_notice("%s: not a record of the hugetlb pool; ignored", p->state_path);
                return;
        }
        if (set != p->base) {
                log_notice("hugetlb pool: a previous hugepaged left it at %" PRIu64 " pages, it is %" PRIu64
                           " now: someone else sized it since; left as it is", set, p->base);
                (void)unlink(p->state_path);
                return;
        }
        log_notice("hugetlb pool: %" PRIu64 " pages were added by a hugepaged that did not exit cleanly; they go "
                   "back to the kernel (the pool returns to %" PRIu64 ") once nobody uses them", set - base, base);
        p->base = base;
        p->added = set - base;
        p->grew = true;
}

static void set_added(struct hugetlb_pool *p, uint64_t persistent, uint64_t hold)
{
        pthread_mutex_lock(&p->lock);
        p->added = persistent > p->base ? persistent - p->base : 0;
        p->fault_hold += hold;
        pthread_mutex_unlock(&p->lock);
}

static void job_grow(struct hugetlb_pool *p, struct pool_job *j)
{
        uint64_t cur = 0, now = 0;

        int r = pool_persistent(p, &cur);
        if (r < 0) {
                j->result = r;
                snprintf(j->why, sizeof(j->why), "cannot read the hugetlb pool: %s", strerror(-r));
                return;
        }
        uint64_t added = cur > p->base ? cur - p->base : 0;
        int64_t g = hugetlb_grow_amount(pool_available(p), j->want, added, j->budget);
        if (g == 0)
                return;
        if (g < 0) {
                j->result = -ENOSPC;
                snprintf(j->why, sizeof(j->why), "%" PRIu64 " huge pages wanted: the daemon's budget "
                         "(HugetlbMaxSize=, %" PRIu64 " pages) has %" PRIu64 " left", j->want, j->budget,
                         j->budget > added ? j->budget - added : 0);
                return;
        }
        /* On top of the surplus pages too: writing only persistent + g would
         * turn surplus pages in use back into persistent ones and allocate
         * nothing. */
        uint64_t total = cur, total_now = cur;
        (void)read_u64(p->nr_fd, &total);
        r = write_u64(p->nr_fd, total + (uint64_t)g);
        /* a partial grow still changes the pool: read what it is now */
        if (read_u64(p->nr_fd, &total_now) < 0)
                total_now = total;
        if (pool_persistent(p, &now) < 0)
                now = cur;
        uint64_t got = total_now > total ? total_now - total : 0;
        if (got) {
                p->grew = true;
                state_save(p, now);
        }
        /* a shrink queued meanwhile must not take it before the copy */
        set_added(p, now, j->kind == JOB_FAULT ? got : 0);
        j->got = got;
        if (got && j->kind == JOB_RESERVE)
                pretouch(got);
        log_debug("hugetlb pool: %" PRIu64 " -> %" PRIu64 " pages (%" PRId64 " wanted, %" PRIu64 " added)", cur, now,
                  g, got);
        if (got < (uint64_t)g) {
                j->result = -ENOMEM;
                snprintf(j->why, sizeof(j->why), "the kernel added %" PRIu64 " of %" PRId64 " huge pages to the pool%s%s",
                         got, g, r < 0 ? ": " : " (memory short or fragmented)", r < 0 ? strerror(-r) : "");
        }
}

static void job_shrink(struct hugetlb_pool *p, struct pool_job *j)
{
        uint64_t cur, now;

        if (pool_persistent(p, &cur) < 0)
                return;
        uint64_t added = cur > p->base ? cur - p->base : 0;
        pthread_mutex_lock(&p->lock);
        uint64_t target = hugetlb_shrink_target(cur, added, j->charged + p->fault_hold);
        pthread_mutex_unlock(&p->lock);
        if (target < cur) {
                int r = write_u64(p->nr_fd, target);
                if (r < 0)
                        log_warning_errno(r, "hugetlb pool: cannot write nr_hugepages: %m");
        }
        if (pool_persistent(p, &now) < 0)
                now = cur;
        if (now != cur)
                state_save(p, now);
        set_added(p, now, 0);
        j->got = cur > now ? cur - now : 0;
        if (target < cur)
                log_debug("hugetlb pool: %" PRIu64 " -> %" PRIu64 " pages (%" PRIu64 " charged)", cur, now,
                          j->charged);
}

static void *pool_thread(void *arg)
{
        struct hugetlb_pool *p = arg;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                while (!p->queue && !p->stop)
                        pthread_cond_wait(&p->cond, &p->lock);
                if (p->stop)
                        break;
                struct pool_job *j = p->queue;
                p->queue = j->next;
                if (!p->queue)
                        p->queue_tail = &p->queue;
                pthread_mutex_unlock(&p->lock);

                if (j->kind == JOB_SHRINK)
                        job_shrink(p, j);
                else
                        job_grow(p, j);

                pthread_mutex_lock(&p->lock);
                j->next = NULL;
                *p->done_tail = j;
                p->done_tail = &j->next;
                uint64_t one = 1;
                if (write(p->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                        log_debug_errno(errno, "hugetlb pool: eventfd: %m");
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

static int queue_job(struct hugetlb_pool *p, const struct pool_job *tmpl)
{
        struct pool_job *j = malloc(sizeof(*j));
        if (!j)
                return -ENOMEM;
        *j = *tmpl;
        j->next = NULL;
        pthread_mutex_lock(&p->lock);
        *p->queue_tail = j;
        p->queue_tail = &j->next;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
        return 0;
}

static void *fill_thread(void *arg)
{
        struct hugetlb_pool *p = arg;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                while (!p->fills && !p->stop)
                        pthread_cond_wait(&p->fill_cond, &p->lock);
                if (p->stop)
                        break;
                struct fill_job *j = p->fills;
                p->fills = j->next;
                if (!p->fills)
                        p->fills_tail = &p->fills;
                pthread_mutex_unlock(&p->lock);

                /* Counted before a thread that faulted here meanwhile is
                 * woken: it may run to its exit before this is reported. */
                struct uffdio_copy cp = { .dst = j->addr, .src = (uint64_t)(uintptr_t)j->src, .len = HP_REGION_SIZE,
                                          .mode = UFFDIO_COPY_MODE_DONTWAKE };
                j->result = __atomic_load_n(&j->fds->gone, __ATOMIC_ACQUIRE) ? -ESRCH :
                            ioctl(j->fds->uffd, UFFDIO_COPY, &cp) < 0 ? -errno : 0;
                if (j->result == 0) {
                        __atomic_add_fetch(&j->fds->prefilled, 1, __ATOMIC_RELEASE);
                        struct uffdio_range r = { .start = j->addr, .len = HP_REGION_SIZE };
                        (void)ioctl(j->fds->uffd, UFFDIO_WAKE, &r);
                }

                pthread_mutex_lock(&p->lock);
                j->next = NULL;
                *p->filled_tail = j;
                p->filled_tail = &j->next;
                uint64_t one = 1;
                if (write(p->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                        log_debug_errno(errno, "hugetlb pool: eventfd: %m");
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

/* ---- budgets -------------------------------------------------------------------- */

static uint64_t size_pages(const struct config_size *s)
{
        if (s->percent) {
                struct sysinfo si;
                if (sysinfo(&si) < 0)
                        return 0;
                return (uint64_t)si.totalram * si.mem_unit / 100 * s->percent / HP_REGION_SIZE;
        }
        return s->bytes / HP_REGION_SIZE;
}

static uint64_t budget_pages(struct manager *m)
{
        return size_pages(&m->cfg.hugetlb_max);
}

/* 0: no per-client limit */
static uint64_t client_cap_pages(struct manager *m)
{
        return size_pages(&m->cfg.huge_per_client);
}

static uint64_t ranges_pages(const struct client *c)
{
        uint64_t n = 0;
        for (size_t i = 0; i < c->ranges.n; i++)
                if (c->ranges.v[i].backend == HP_RANGE_HUGETLB)
                        n += (c->ranges.v[i].end - c->ranges.v[i].start + HP_REGION_SIZE - 1) / HP_REGION_SIZE;
        return n;
}

uint64_t hugetlb_client_pages(const struct client *c)
{
        if (!c->hugetlb.used)
                return 0;
        return ranges_pages(c) + c->hugetlb.pending;
}

static uint64_t charged_total(struct manager *m)
{
        uint64_t n = 0;
        for (struct client *c = m->clients; c; c = c->next)
                if (c->state != CLIENT_DEAD)
                        n += hugetlb_client_pages(c);
        return n;
}

static void maybe_shrink(struct manager *m)
{
        struct hugetlb_pool *p = m->hugetlb;
        if (!p || p->shrink_queued)
                return;
        pthread_mutex_lock(&p->lock);
        uint64_t added = p->added;
        pthread_mutex_unlock(&p->lock);
        uint64_t charged = charged_total(m);
        if (added <= charged)
                return;
        /* pages still in use by someone nobody charged (the pool only shrinks
         * as they are freed): try again when something changes, not per tick */
        if (added == p->fruitless_added && charged == p->fruitless_charged)
                return;
        if (queue_job(p, &(struct pool_job){ .kind = JOB_SHRINK, .charged = charged }) == 0)
                p->shrink_queued = true;
}

void hugetlb_tick(struct manager *m)
{
        maybe_shrink(m);
}

void hugetlb_client_gone(struct manager *m)
{
        maybe_shrink(m);
}

/* ---- faults --------------------------------------------------------------------- */

static int copy_page(struct client *c, uint64_t dst)
{
        struct uffdio_copy cp = { .dst = dst, .src = (uint64_t)(uintptr_t)c->m->zero_page, .len = HP_REGION_SIZE };
        return ioctl(c->uffd, UFFDIO_COPY, &cp) < 0 ? -errno : 0;
}

static void wake_page(struct client *c, uint64_t dst)
{
        struct uffdio_range r = { .start = dst, .len = HP_REGION_SIZE };
        if (ioctl(c->uffd, UFFDIO_WAKE, &r) < 0 && errno != ENOENT && errno != ESRCH)
                log_debug_errno(errno, "client %d: UFFDIO_WAKE %#" PRIx64 ": %m", c->pid, dst);
}

static void served(struct client *c, uint64_t t0)
{
        struct manager *m = c->m;
        uint64_t dt = now_ns() - t0;
        c->hugetlb.faults++;
        m->hugetlb->faults++;
        c->c.pages_populated += HP_REGION_PAGES;
        m->c.pages_populated += HP_REGION_PAGES;
        histogram_add(&c->c.fault_latency_ns, dt);
        histogram_add(&m->c.fault_latency_ns, dt);
}

/* No page for the fault and none to be had: leave it to the kernel, which
 * does what it would have done without the daemon (SIGBUS for a
 * MAP_NORESERVE mapping with an empty pool). */
static void fail_open(struct client *c, uint64_t dst, const char *why)
{
        log_notice("client %d: no huge page for %#" PRIx64 " (%s): the kernel handles it", c->pid, dst, why);
        (void)region_unregister(c, dst, HP_REGION_SIZE);
        fault_drop_span(c, dst, dst + HP_REGION_SIZE);
        wake_page(c, dst);
}

static bool filling(const struct client *c, uint64_t dst)
{
        for (unsigned i = 0; i < c->hugetlb.nfilling; i++)
                if (c->hugetlb.filling[i] == dst)
                        return true;
        return false;
}

/* A fault at dst: if it continues a stream, have the fill threads copy the
 * pages after it, up to HUGETLB_FILL_AHEAD past it, within its range. */
static void fill_ahead(struct client *c, uint64_t dst)
{
        struct client_hugetlb *h = &c->hugetlb;
        struct hugetlb_pool *p = c->m->hugetlb;
        bool stream = dst == h->last_fault + HP_REGION_SIZE || filling(c, dst);

        h->last_fault = dst;
        if (!stream || !p || !p->nfillers)
                return;
        const struct range *rg = range_find(&c->ranges, dst);
        if (!rg || rg->backend != HP_RANGE_HUGETLB)
                return;
        uint64_t from = dst + HP_REGION_SIZE, to = dst + (HUGETLB_FILL_AHEAD + 1) * HP_REGION_SIZE;
        if (h->ahead_end > from && h->ahead_end <= to)
                from = h->ahead_end;            /* the same stream: what is new */
        if (to > rg->end)
                to = rg->end;
        uint64_t a = from;
        for (; a < to && h->nfilling < HUGETLB_FILL_AHEAD + 1; a += HP_REGION_SIZE) {
                if (filling(c, a))
                        continue;
                struct fill_job *j = calloc(1, sizeof(*j));
                if (!j)
                        break;
                *j = (struct fill_job){ .client_id = c->id, .fds = client_fds_ref(c->fds), .src = c->m->zero_page,
                                        .addr = a };
                h->filling[h->nfilling++] = a;
                pthread_mutex_lock(&p->lock);
                *p->fills_tail = j;
                p->fills_tail = &j->next;
                pthread_cond_signal(&p->fill_cond);
                pthread_mutex_unlock(&p->lock);
        }
        h->ahead_end = a;
}

/* Bring c's fill counters up to what its fill threads counted (the count
 * in its fds, made before each wake), reported or not. */
static void count_fills(struct client *c)
{
        struct manager *m = c->m;
        uint64_t done = __atomic_load_n(&c->fds->prefilled, __ATOMIC_ACQUIRE);

        if (done <= c->hugetlb.prefilled)
                return;
        uint64_t n = done - c->hugetlb.prefilled;
        c->hugetlb.prefilled += n;
        m->hugetlb->prefilled += n;
        c->c.pages_populated += n * HP_REGION_PAGES;
        m->c.pages_populated += n * HP_REGION_PAGES;
}

static void fill_done(struct manager *m, struct fill_job *j)
{
        struct client *c = client_by_id(m, j->client_id);

        if (c && c->state == CLIENT_READY) {
                struct client_hugetlb *h = &c->hugetlb;
                for (unsigned i = 0; i < h->nfilling; i++)
                        if (h->filling[i] == j->addr) {
                                h->filling[i] = h->filling[--h->nfilling];
                                break;
                        }
                if (j->result == 0) {
                        count_fills(c);
                } else {
                        /* -EEXIST (there already, or no free page), -ENOENT
                         * (unmapped): a thread that faulted here meanwhile
                         * was left to this copy; it faults again, and the
                         * main thread serves it. */
                        wake_page(c, j->addr);
                }
        }
        client_fds_unref(j->fds);
        free(j);
}

void hugetlb_client_leaving(struct client *c)
{
        if (c->m->hugetlb)
                count_fills(c);
}

static void drain_fills(struct manager *m)
{
        struct hugetlb_pool *p = m->hugetlb;

        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        struct fill_job *fills = p->filled;
        p->filled = NULL;
        p->filled_tail = &p->filled;
        pthread_mutex_unlock(&p->lock);
        while (fills) {
                struct fill_job *j = fills;
                fills = j->next;
                fill_done(m, j);
        }
}

void hugetlb_fault(struct client *c, uint64_t addr, uint64_t t0)
{
        struct hugetlb_pool *p = c->m->hugetlb;
        uint64_t dst = addr & ~(HP_REGION_SIZE - 1);

        if (filling(c, dst)) {
                /* a fill thread is copying it: that copy wakes the thread */
                fill_ahead(c, dst);
                return;
        }
        int e = copy_page(c, dst);
        if (e == 0) {
                c->hugetlb.last_eexist = 0;
                served(c, t0);
                fill_ahead(c, dst);
                return;
        }
        /* -EEXIST is also what a copy that found no free page returns (a
         * MAP_NORESERVE mapping, or pages taken by someone else): when the
         * pool has nothing available, or the same page faults again after an
         * -EEXIST (a page that is there does not fault), grow the pool, then
         * copy; the thread waits in its fault meanwhile. */
        bool again = e == -EEXIST && c->hugetlb.last_eexist == dst;
        if (e == -EEXIST)
                c->hugetlb.last_eexist = dst;
        if (e == -EEXIST && p && (again || pool_available(p) == 0)) {
                c->hugetlb.last_eexist = 0;
                struct pool_job j = { .kind = JOB_FAULT, .client_id = c->id, .addr = dst, .want = 1,
                                      .budget = budget_pages(c->m), .t0 = t0 };
                if (queue_job(p, &j) == 0)
                        return;
                fail_open(c, dst, "out of memory");
                return;
        }
        /* -EEXIST (already there), -EAGAIN (an event in flight), -ENOENT
         * (unmapped meanwhile): the thread retries on its own. */
        wake_page(c, dst);
}

static void fault_grown(struct client *c, const struct pool_job *j)
{
        if (j->result < 0) {
                fail_open(c, j->addr, j->why);
                return;
        }
        int e = copy_page(c, j->addr);
        if (e == 0)
                served(c, j->t0);       /* the wait for the pool included */
        else if (e == -EEXIST)
                /* no page to be had even now (or, rarely, a page already
                 * there, which the kernel then keeps serving): no retry loop */
                fail_open(c, j->addr, "no free page after growing the pool");
        else
                wake_page(c, j->addr);
}

/* ---- results --------------------------------------------------------------------- */

static void on_done(struct watch *w, int revents)
{
        struct hugetlb_pool *p = w->data;
        struct manager *m = p->m;
        uint64_t v;

        if (read(p->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_debug_errno(errno, "hugetlb pool: eventfd: %m");
        drain_fills(m);
        pthread_mutex_lock(&p->lock);
        struct pool_job *list = p->done;
        p->done = NULL;
        p->done_tail = &p->done;
        pthread_mutex_unlock(&p->lock);

        while (list) {
                struct pool_job *j = list;
                list = j->next;
                struct client *c = j->kind == JOB_SHRINK ? NULL : client_by_id(m, j->client_id);
                if (c && c->state == CLIENT_READY) {
                        if (j->kind == JOB_RESERVE) {
                                if (c->hugetlb.jobs > 0)
                                        c->hugetlb.jobs--;
                                if (j->result < 0)
                                        c->hugetlb.pending = 0;
                                client_reply(c, j->seq, j->result, j->result < 0 ? j->why : NULL);
                        } else
                                fault_grown(c, j);
                }
                if (j->kind == JOB_FAULT) {
                        pthread_mutex_lock(&p->lock);
                        p->fault_hold -= j->got < p->fault_hold ? j->got : p->fault_hold;
                        pthread_mutex_unlock(&p->lock);
                }
                if (j->kind == JOB_SHRINK) {
                        p->shrink_queued = false;
                        if (j->got == 0) {
                                pthread_mutex_lock(&p->lock);
                                p->fruitless_added = p->added;
                                pthread_mutex_unlock(&p->lock);
                                p->fruitless_charged = j->charged;
                        } else
                                p->fruitless_added = p->fruitless_charged = 0;
                }
                free(j);
        }
        /* pages added for a request that failed, or a client that left */
        maybe_shrink(m);
}

/* ---- requests --------------------------------------------------------------------- */

void hugetlb_reserve(struct client *c, const struct hp_hugetlb_req *req)
{
        struct manager *m = c->m;
        struct hugetlb_pool *p = m->hugetlb;
        char why[HP_ERROR_TEXT];

        if (!p) {
                client_reply(c, req->hdr.seq, -EOPNOTSUPP, "the hugetlb backend is off (no 2 MiB huge pages)");
                return;
        }
        c->hugetlb.used = true;
        if (req->pages == 0) {          /* the mmap it was for failed */
                c->hugetlb.pending = 0;
                client_reply(c, req->hdr.seq, 0, NULL);
                maybe_shrink(m);
                return;
        }
        uint64_t cap = client_cap_pages(m), have = ranges_pages(c);
        if (cap && (req->pages > cap || have > cap - req->pages)) {
                snprintf(why, sizeof(why), "%" PRIu64 " huge pages asked, %" PRIu64 " held: over MaxHugePerClient= "
                         "(%" PRIu64 " pages)", req->pages, have, cap);
                client_reply(c, req->hdr.seq, -EDQUOT, why);
                return;
        }
        if (c->hugetlb.jobs >= JOBS_PER_CLIENT) {
                client_reply(c, req->hdr.seq, -EBUSY, "too many hugetlb requests waiting");
                return;
        }
        struct pool_job j = { .kind = JOB_RESERVE, .client_id = c->id, .seq = req->hdr.seq, .want = req->pages,
                              .budget = budget_pages(m) };
        if (queue_job(p, &j) < 0) {
                client_reply(c, req->hdr.seq, -ENOMEM, "out of memory");
                return;
        }
        c->hugetlb.jobs++;
        c->hugetlb.pending = req->pages;        /* charged from now: a shrink must not take them */
}

void hugetlb_register(struct client *c, const struct hp_range_req *req)
{
        struct manager *m = c->m;
        uint64_t start = req->addr, end = req->addr + req->length, pages = req->length / HP_REGION_SIZE;
        char why[HP_ERROR_TEXT] = "";
        int r;

        if (!m->hugetlb) {
                client_reply(c, req->hdr.seq, -EOPNOTSUPP, "the hugetlb backend is off (no 2 MiB huge pages)");
                return;
        }
        r = vma_check_hugetlb(c->maps_fd, start, end, why, sizeof(why));
        if (r < 0) {
                client_reply(c, req->hdr.seq, r, why[0] ? why : strerror(-r));
                return;
        }
        uint64_t cap = client_cap_pages(m), have = ranges_pages(c);
        if (cap && (pages > cap || have > cap - pages)) {
                snprintf(why, sizeof(why), "%" PRIu64 " huge pages registered, %" PRIu64 " held: over "
                         "MaxHugePerClient= (%" PRIu64 " pages)", pages, have, cap);
                client_reply(c, req->hdr.seq, -EDQUOT, why);
                return;
        }
        struct range rg = { .start = start, .end = end, .threshold = 0, .backend = HP_RANGE_HUGETLB };
        r = client_register_range(c, &rg, why, sizeof(why));
        if (r < 0) {
                client_reply(c, req->hdr.seq, r, why);
                return;
        }
        c->hugetlb.used = true;
        c->hugetlb.pending = 0;
        log_debug("client %d: registered hugetlb %#" PRIx64 "-%#" PRIx64 " (%" PRIu64 " pages)", c->pid, start, end,
                  pages);
        client_reply(c, req->hdr.seq, 0, NULL);
}

/* ---- life ------------------------------------------------------------------------- */

void hugetlb_stats(struct manager *m, struct hugetlb_stats *ret)
{
        struct hugetlb_pool *p = m->hugetlb;

        *ret = (struct hugetlb_stats){ 0 };
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        ret->pool_added = p->added;
        pthread_mutex_unlock(&p->lock);
        ret->pages = charged_total(m);
        ret->faults = p->faults;
        ret->prefilled = p->prefilled;
        ret->pool_base = p->base;
        ret->budget = budget_pages(m);
}

static void pool_free(struct hugetlb_pool *p)
{
        safe_close(p->nr_fd);
        safe_close(p->free_fd);
        safe_close(p->resv_fd);
        safe_close(p->surplus_fd);
        safe_close(p->efd);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        pthread_cond_destroy(&p->fill_cond);
        free(p->state_path);
        free(p);
}

int hugetlb_start(struct manager *m)
{
        struct hugetlb_pool *p = calloc(1, sizeof(*p));
        int r;

        if (!p)
                return -ENOMEM;
        p->m = m;
        p->efd = -1;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        pthread_cond_init(&p->fill_cond, NULL);
        p->queue_tail = &p->queue;
        p->done_tail = &p->done;
        p->fills_tail = &p->fills;
        p->filled_tail = &p->filled;
        p->free_fd = open(HUGETLB_SYSFS "free_hugepages", O_RDONLY | O_CLOEXEC);
        p->resv_fd = open(HUGETLB_SYSFS "resv_hugepages", O_RDONLY | O_CLOEXEC);
        p->surplus_fd = open(HUGETLB_SYSFS "surplus_hugepages", O_RDONLY | O_CLOEXEC);
        p->nr_fd = open(HUGETLB_SYSFS "nr_hugepages", O_RDWR | O_CLOEXEC);
        if (p->nr_fd < 0 && errno != ENOENT) {
                /* read-only (e.g. ProtectKernelTunables=): serve, but never resize */
                log_warning_errno(errno, "cannot write " HUGETLB_SYSFS "nr_hugepages: %m; the hugetlb pool "
                                  "stays as it is");
                p->nr_fd = open(HUGETLB_SYSFS "nr_hugepages", O_RDONLY | O_CLOEXEC);
        }
        if (p->free_fd < 0 || p->resv_fd < 0 || p->surplus_fd < 0 || p->nr_fd < 0) {
                log_info("no 2 MiB huge pages in this kernel (" HUGETLB_SYSFS "): the hugetlb backend is off");
                pool_free(p);
                return 0;
        }
        if ((r = pool_persistent(p, &p->base)) < 0) {
                pool_free(p);
                return log_error_errno(r, "cannot read " HUGETLB_SYSFS "nr_hugepages: %m");
        }
        const char *sock = m->cfg.socket_path, *slash = sock ? strrchr(sock, '/') : NULL;
        if (slash && asprintf(&p->state_path, "%.*s/hugetlb-pool", (int)(slash - sock), sock) < 0)
                p->state_path = NULL;
        state_adopt(p);
        p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->efd < 0) {
                r = -errno;
                pool_free(p);
                return log_error_errno(r, "eventfd: %m");
        }
        r = -pthread_create(&p->thread, NULL, pool_thread, p);
        if (r < 0) {
                pool_free(p);
                return log_error_errno(r, "cannot start the hugetlb pool thread: %m");
        }
        p->thread_started = true;
        /* Without fill threads, faults are served all the same. */
        while (p->nfillers < FILL_THREADS && pthread_create(&p->fillers[p->nfillers], NULL, fill_thread, p) == 0)
                p->nfillers++;
        if (p->nfillers < FILL_THREADS)
                log_warning("hugetlb: %u of %d fill threads started", p->nfillers, FILL_THREADS);
        m->hugetlb = p;
        r = watch_start(&m->loop, &p->w_done, p->efd, on_done, p);
        if (r < 0)
                return log_error_errno(r, "cannot watch the hugetlb pool thread: %m");
        log_info("hugetlb pool: %" PRIu64 " pages of 2 MiB at start; the daemon may add up to %" PRIu64,
                 p->base + p->added, budget_pages(m));
        maybe_shrink(m);        /* pages inherited from a daemon that was killed */
        return 0;
}

void hugetlb_stop(struct manager *m)
{
        struct hugetlb_pool *p = m->hugetlb;
        uint64_t cur, now;

        if (!p)
                return;
        if (p->thread_started) {
                pthread_mutex_lock(&p->lock);
                p->stop = true;
                pthread_cond_signal(&p->cond);
                pthread_cond_broadcast(&p->fill_cond);
                pthread_mutex_unlock(&p->lock);
                pthread_join(p->thread, NULL);
                for (unsigned i = 0; i < p->nfillers; i++)
                        pthread_join(p->fillers[i], NULL);
        }
        for (struct fill_job *lists[2] = { p->fills, p->filled }, **l = lists; l < lists + 2; l++)
                while (*l) {
                        struct fill_job *j = *l;
                        *l = j->next;
                        client_fds_unref(j->fds);
                        free(j);
                }
        /* Give back everything the daemon added: pages still in use become
         * surplus pages and go back to the kernel when their owners free them. */
        if (p->grew && pool_persistent(p, &cur) == 0 && cur > p->base) {
                int r = write_u64(p->nr_fd, p->base);
                if (pool_persistent(p, &now) < 0)
                        now = cur;
                if (r < 0 || now != p->base)
                        log_warning("hugetlb pool: could not restore nr_hugepages to %" PRIu64 " (it is %" PRIu64 ")",
                                    p->base, now);
                else
                        log_info("hugetlb pool: restored nr_hugepages %" PRIu64 " -> %" PRIu64, cur, now);
                state_save(p, now);     /* nothing left of ours: the record goes */
        }
        while (p->queue) {
                struct pool_job *j = p->queue;
                p->queue = j->next;
                free(j);
        }
        while (p->done) {
                struct pool_job *j = p->done;
                p->done = j->next;
                free(j);
        }
        m->hugetlb = NULL;
        pool_free(p);
}
