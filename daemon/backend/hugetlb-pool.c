/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hugetlb-pool.c: the kernel's pool of 2 MiB huge pages (vm.nr_hugepages),
 * grown and shrunk on the clients' behalf (hugetlb.h says by how much).
 *
 * Threads: every change of vm.nr_hugepages runs on one pool thread
 * (hp-hugetlb-pool, a workq), in order: growing the pool, pre-touching the
 * pages it added (the first touch of guest memory the host never backed
 * costs milliseconds per 2 MiB, and belongs here, not on a client's fault)
 * and shrinking it. Jobs come back to the backend (hugetlb.c) on the main
 * thread. `added` and `fault_hold` are under the lock; the rest of struct
 * hugetlb_pool is set before the thread starts or is the thread's own.
 *
 * Kernel behaviour relied on (6.18):
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
 * Must never: block the main thread on the pool, or take the pool below the
 * size it found at start (or inherited as above).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hugetlb.h"
#include "log.h"
#include "manager.h"
#include "util.h"

#define HUGETLB_SYSFS "/sys/kernel/mm/hugepages/hugepages-2048kB/"

struct hugetlb_pool {
        int nr_fd, free_fd, resv_fd, surplus_fd;
        uint64_t base;          /* nr_hugepages at start (or inherited) */
        char *state_path;       /* hugetlb-pool in the socket's directory, or NULL */
        bool grew;              /* pool thread: the daemon changed the pool at least once */
        void (*done)(struct pool_job *j, void *data);
        void *data;
        struct workq *q;

        pthread_mutex_t lock;
        uint64_t added;         /* under lock; written by the pool thread */
        uint64_t fault_hold;    /* under lock: pages grown for faults whose copy has not run yet */
};

/* ---- sysfs -------------------------------------------------------------------- */

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
uint64_t hugetlb_pool_available(struct hugetlb_pool *p)
{
        uint64_t f = 0, r = 0;
        if (hp_pread_u64(p->free_fd, &f) < 0 || hp_pread_u64(p->resv_fd, &r) < 0)
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
        uint64_t nr = 0, surplus = 0;
        int r = hp_pread_u64(p->nr_fd, &nr);
        if (r < 0)
                return r;
        (void)hp_pread_u64(p->surplus_fd, &surplus);
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
        int64_t g = hugetlb_grow_amount(hugetlb_pool_available(p), j->want, added, j->budget);
        if (g == 0)
                return;
        if (j->no_grow) {
                j->result = -ENOMEM;
                snprintf(j->why, sizeof(j->why), "%" PRIu64 " huge pages wanted: the host is short of memory, "
                         "the daemon does not grow the pool now", j->want);
                return;
        }
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
        (void)hp_pread_u64(p->nr_fd, &total);
        r = write_u64(p->nr_fd, total + (uint64_t)g);
        /* a partial grow still changes the pool: read what it is now */
        if (hp_pread_u64(p->nr_fd, &total_now) < 0)
                total_now = total;
        if (pool_persistent(p, &now) < 0)
                now = cur;
        uint64_t got = total_now > total ? total_now - total : 0;
        if (got) {
                p->grew = true;
                state_save(p, now);
        }
        /* a shrink queued meanwhile must not take it before the copy */
        set_added(p, now, j->kind == POOL_FAULT ? got : 0);
        j->got = got;
        if (got && j->kind == POOL_RESERVE)
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

static enum work_step pool_run(struct work *w, void *data)
{
        struct pool_job *j = (struct pool_job *)w;

        if (j->kind == POOL_SHRINK)
                job_shrink(data, j);
        else
                job_grow(data, j);
        return WORK_DONE;
}

static void pool_done(struct work *w, void *data)
{
        struct hugetlb_pool *p = data;
        p->done((struct pool_job *)w, p->data);
}

static void pool_drop(struct work *w, void *data)
{
        free(w);
}

static const struct workq_ops pool_ops = {
        .run = pool_run,
        .done = pool_done,
        .drop = pool_drop,
};

int hugetlb_pool_queue(struct hugetlb_pool *p, const struct pool_job *tmpl)
{
        struct pool_job *j = malloc(sizeof(*j));
        if (!j)
                return -ENOMEM;
        *j = *tmpl;
        j->w = (struct work){ 0 };
        workq_push(p->q, &j->w);
        return 0;
}

uint64_t hugetlb_pool_added(struct hugetlb_pool *p)
{
        pthread_mutex_lock(&p->lock);
        uint64_t v = p->added;
        pthread_mutex_unlock(&p->lock);
        return v;
}

uint64_t hugetlb_pool_base(const struct hugetlb_pool *p)
{
        return p->base;
}

void hugetlb_pool_release_hold(struct hugetlb_pool *p, uint64_t pages)
{
        pthread_mutex_lock(&p->lock);
        p->fault_hold -= pages < p->fault_hold ? pages : p->fault_hold;
        pthread_mutex_unlock(&p->lock);
}

static void pool_close(struct hugetlb_pool *p)
{
        safe_close(p->nr_fd);
        safe_close(p->free_fd);
        safe_close(p->resv_fd);
        safe_close(p->surplus_fd);
        pthread_mutex_destroy(&p->lock);
        free(p->state_path);
        free(p);
}

int hugetlb_pool_new(struct loop *l, const char *state_dir, void (*done)(struct pool_job *j, void *data),
                     void *data, struct hugetlb_pool **ret)
{
        struct hugetlb_pool *p = calloc(1, sizeof(*p));
        int r;

        *ret = NULL;
        if (!p)
                return -ENOMEM;
        p->done = done;
        p->data = data;
        pthread_mutex_init(&p->lock, NULL);
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
                pool_close(p);
                return 0;
        }
        if ((r = pool_persistent(p, &p->base)) < 0) {
                pool_close(p);
                return log_error_errno(r, "cannot read " HUGETLB_SYSFS "nr_hugepages: %m");
        }
        if (state_dir && asprintf(&p->state_path, "%s/hugetlb-pool", state_dir) < 0)
                p->state_path = NULL;
        state_adopt(p);
        r = workq_new(l, "hp-hugetlb-pool", 1, &pool_ops, p, &p->q);
        if (r < 0) {
                pool_close(p);
                return log_error_errno(r, "cannot start the hugetlb pool thread: %m");
        }
        *ret = p;
        return 0;
}

void hugetlb_pool_free(struct hugetlb_pool *p)
{
        uint64_t cur, now;

        if (!p)
                return;
        workq_free(p->q);
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
        pool_close(p);
}
