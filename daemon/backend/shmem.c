/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem.c: the shmem backend (HP_RANGE_SHMEM): zero-copy reservations in
 * shared memory. A client asks for a file (HP_MSG_SHMEM_CREATE); the daemon
 * makes it on its huge tmpfs (shmem-fs.c), keeps an fd and passes one; the
 * client maps it MAP_SHARED, 2 MiB aligned, and registers the mapping,
 * MISSING and MINOR.
 *
 *  - A region's first fault reserves its 2 MiB in the file (fallocate: the
 *    tmpfs puts a 2 MiB folio in its page cache; a reservation that got
 *    small pages is counted), then maps the faulting 4 KiB with
 *    UFFDIO_CONTINUE: nothing is copied. Later faults in the region: the
 *    same CONTINUE.
 *  - Once the region has its threshold of subpages mapped, MADV_COLLAPSE
 *    (process_madvise on the client's pidfd, on this backend's worker)
 *    maps the folio by PMD where it is, in every client that maps the file
 *    there: nothing is copied or allocated.
 *  - Under memory pressure, the never-touched subpages of reservations not
 *    promoted are punched out of the file (fallocate PUNCH_HOLE), if they
 *    read zero: a process that maps the file without being a client (it
 *    was passed the fd) may have written them.
 *
 * Files and holders: a file is held by the client that asked for it and by
 * every client that registered a mapping of it (a child forked without
 * exec takes over its parent's ranges, fork.c); the daemon's fd closes
 * once nobody holds it, and the file goes with the last mapping. A client
 * may register only mappings of files made for its own uid.
 *
 * Accounting: the pages are allocated by the daemon's fallocate, so the
 * kernel charges them to the daemon's memory cgroup (shmem charges a page
 * to the memcg of the mm that allocates it, and the daemon's threads all
 * share one mm). A client may hold at most MaxShmemPerClient= bytes of
 * files, and never more than the room its own cgroup's limit leaves (less
 * HeadroomMargin=) when it asks: refused requests are counted, and the
 * program keeps ordinary anonymous shared memory.
 *
 * Failing open: a reservation that cannot be made (the tmpfs is full, the
 * file is gone) hands the region to the kernel (unregistered), which
 * allocates the page itself. If the daemon dies, the client's uffd closes,
 * and the kernel serves every fault from the page cache, which keeps the
 * data.
 *
 * Threads: faults and unmap events come on the fault threads, with the
 * client's lock held; requests, collapse results, pressure and counters on
 * the main thread. The files, their region records and the backend's
 * totals are shared between clients (a parent and its forked children are
 * served on different threads), so they are under `struct shmem`'s lock,
 * taken after a client's lock and never before one. A fault thread never
 * looks at another client: the collapse of a region in the other clients
 * that map it is queued by the main thread once the first one is done.
 * The collapse jobs (hp-shmem, a workq) get a client id, a reference to
 * its fds and a reference to the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend.h"
#include "client.h"
#include "compat.h"
#include "fault.h"
#include "log.h"
#include "manager.h"
#include "memcg.h"
#include "policy.h"
#include "pressure.h"
#include "shmem.h"
#include "util.h"
#include "vma.h"
#include "workq.h"

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* PAGEMAP_SCAN (Linux 6.7), for headers that predate it */
#ifndef PAGEMAP_SCAN
#define PAGE_IS_HUGE (1 << 6)
struct page_region {
        uint64_t start, end, categories;
};
struct pm_scan_arg {
        uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
                category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

#define FILES_PER_CLIENT 1024   /* files a client may hold at once */
#define FILES_PER_RANGE 8       /* files one registered range may span */
#define COLLAPSE_TRIES 3        /* failed collapses before a region is left at 4 KiB */

enum {
        SR_RESERVED = 1 << 0,   /* its 2 MiB are in the file (fallocate) */
        SR_NOHUGE = 1 << 1,     /* ... but not as one 2 MiB folio */
        SR_HUGE = 1 << 2,       /* collapsed (PMD-mapped) in some client */
        SR_PUNCHED = 1 << 3,    /* its untouched subpages were released */
        SR_NOCOLLAPSE = 1 << 4, /* collapse failed COLLAPSE_TRIES times */
};

/* One 2 MiB region of a file. */
struct shm_region {
        uint64_t bits[HP_REGION_PAGES / 64];    /* subpages some client's fault mapped */
        uint16_t touched;       /* bits set */
        uint8_t flags;          /* SR_* */
        uint8_t fails;          /* collapses failed */
        uint16_t jobs;          /* collapses in flight */
};

/* A file the daemon made. Held by clients (holders); referenced by them and
 * by collapse jobs (refs): its fd closes when nobody holds it, the struct
 * is freed when nothing references it. */
struct shm_file {
        struct shm_file *prev, *next;   /* in shmem.files while held */
        int fd;                 /* -1 once nobody holds it */
        unsigned dev_major, dev_minor;
        uint64_t ino;
        uid_t uid;              /* of the client it was made for */
        uint64_t owner;         /* that client's id; 0 once it is gone */
        uint64_t length;        /* bytes asked: charged to the owner */
        uint64_t size;          /* length rounded up to 2 MiB */
        unsigned holders, refs;
        char *map;              /* the daemon's own PROT_READ view, 2 MiB aligned, or NULL */
        uint32_t nregions;
        struct shm_region *regions;
};

enum {
        CNT_BYTES,              /* charged now: files it asked for, held */
        CNT_RESERVATIONS,
        CNT_NOHUGE,             /* reservations that got no 2 MiB folio */
        CNT_MAPPED,             /* subpages mapped by UFFDIO_CONTINUE */
        CNT_PROMOTIONS,         /* in-place collapses */
        CNT_PUNCHED,            /* subpages released */
        CNT_REFUSED,            /* file requests refused for a budget */
        _CNT_MAX,
};

/* Per client: client->backend[HP_RANGE_SHMEM], from its first shmem request on. */
struct client_shmem {
        struct shm_file **held;
        uint8_t *registered;    /* per held file: 1 it registered a mapping of it (2: seen, span_gone) */
        unsigned nheld, cap;
        uint64_t bytes;         /* lengths of the held files it asked for */
        /* the VMA of the last fault: valid until a register or an event */
        uint64_t vma_start, vma_end, vma_off;
        struct shm_file *vma_file;
        uint64_t n[_CNT_MAX];
};

/* The backend's global state: manager->backend[HP_RANGE_SHMEM], NULL when off. */
struct shmem {
        struct manager *m;
        pthread_mutex_t lock;   /* the files, their regions, bytes, retired (see the top) */
        int fs_fd;              /* the tmpfs (shmem-fs.c) */
        uint64_t fs_size;       /* its size= */
        uint64_t bytes;         /* sizes of the files held: never more than fs_size */
        int pagemap_fd;         /* /proc/self/pagemap: is a reservation one folio */
        void *scratch;          /* 2 MiB: a region read back before a release */
        struct workq *wq;
        struct shm_file *files;
        uint64_t retired[_CNT_MAX];     /* of clients gone */
};

/* A collapse of one region in one client's mm. */
struct collapse_job {
        struct work w;
        uint64_t client_id;
        struct client_fds *fds;
        struct shm_file *f;
        uint32_t region;
        uint64_t addr;
        int result;
};

static struct shmem *shmem_of(struct manager *m)
{
        return m->backend[HP_RANGE_SHMEM];
}

static void sh_lock(struct shmem *sh)
{
        pthread_mutex_lock(&sh->lock);
}

static void sh_unlock(struct shmem *sh)
{
        pthread_mutex_unlock(&sh->lock);
}

static struct client_shmem *state_of(const struct client *c)
{
        return c->backend[HP_RANGE_SHMEM];
}

static struct client_shmem *state_get(struct client *c)
{
        if (!c->backend[HP_RANGE_SHMEM])
                c->backend[HP_RANGE_SHMEM] = calloc(1, sizeof(struct client_shmem));
        return c->backend[HP_RANGE_SHMEM];
}

static uint64_t size_bytes(const struct config_size *s)
{
        if (s->percent) {
                struct sysinfo si;
                if (sysinfo(&si) < 0)
                        return 0;
                return (uint64_t)si.totalram * si.mem_unit / 100 * s->percent & ~(HP_REGION_SIZE - 1);
        }
        return s->bytes;
}

/* ---- files -------------------------------------------------------------------- */

static void file_unref(struct shm_file *f)
{
        if (f && --f->refs == 0) {
                free(f->regions);
                free(f);
        }
}

/* Nobody holds it any more: the daemon lets go of it (its mappings keep it). */
static void file_close(struct shmem *sh, struct shm_file *f)
{
        if (f->prev)
                f->prev->next = f->next;
        else
                sh->files = f->next;
        if (f->next)
                f->next->prev = f->prev;
        f->prev = f->next = NULL;
        if (f->map)
                munmap(f->map, f->size);
        f->map = NULL;
        f->fd = safe_close(f->fd);
        sh->bytes -= f->size < sh->bytes ? f->size : sh->bytes;
        file_unref(f);
}

static struct shm_file *file_find(struct shmem *sh, unsigned major, unsigned minor, uint64_t ino)
{
        for (struct shm_file *f = sh->files; f; f = f->next)
                if (f->ino == ino && f->dev_major == major && f->dev_minor == minor)
                        return f;
        return NULL;
}

/* A PROT_READ view of the file, 2 MiB aligned, to tell a 2 MiB folio from
 * small pages (reserve_region); NULL if it cannot be had. */
static char *file_map(int fd, uint64_t size)
{
        char *p = mmap(NULL, size + HP_REGION_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
                return NULL;
        char *a = (char *)(((uintptr_t)p + HP_REGION_SIZE - 1) & ~(uintptr_t)(HP_REGION_SIZE - 1));
        if (mmap(a, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
                munmap(p, size + HP_REGION_SIZE);
                return NULL;
        }
        if (a > p)
                munmap(p, (size_t)(a - p));
        if (a + size < p + size + HP_REGION_SIZE)
                munmap(a + size, (size_t)(p + size + HP_REGION_SIZE - (a + size)));
        return a;
}

static int held_index(const struct client_shmem *s, const struct shm_file *f)
{
        for (unsigned i = 0; i < s->nheld; i++)
                if (s->held[i] == f)
                        return (int)i;
        return -1;
}

/* c holds f from now on (once). 0 or -ENOMEM. */
static int hold(struct client_shmem *s, struct shm_file *f, bool registered)
{
        int i = held_index(s, f);
        if (i >= 0) {
                s->registered[i] |= registered;
                return 0;
        }
        if (s->nheld == s->cap) {
                unsigned cap = s->cap ? s->cap * 2 : 4;
                struct shm_file **h = realloc(s->held, cap * sizeof(*h));
                if (!h)
                        return -ENOMEM;
                s->held = h;
                uint8_t *r = realloc(s->registered, cap * sizeof(*r));
                if (!r)
                        return -ENOMEM;
                s->registered = r;
                s->cap = cap;
        }
        s->held[s->nheld] = f;
        s->registered[s->nheld++] = registered;
        f->holders++;
        f->refs++;
        return 0;
}

/* c lets go of its i-th file. */
static void unhold(struct shmem *sh, struct client *c, struct client_shmem *s, unsigned i)
{
        struct shm_file *f = s->held[i];

        if (s->vma_file == f)
                s->vma_file = NULL;
        if (f->owner == c->id) {
                s->bytes -= f->length < s->bytes ? f->length : s->bytes;
                f->owner = 0;
        }
        s->held[i] = s->held[s->nheld - 1];
        s->registered[i] = s->registered[s->nheld - 1];
        s->nheld--;
        if (--f->holders == 0 && f->fd >= 0)
                file_close(sh, f);
        else
                file_unref(f);
}

/* ---- reservations ----------------------------------------------------------------- */

/* Is the region at off one 2 MiB folio? Map it in the daemon's own view
 * (by PMD if it is one), ask PAGEMAP_SCAN, unmap it. 1, 0, or -errno when
 * it cannot be told. The read clears the folio, as the first CONTINUE
 * would have. */
static int region_is_folio(struct shmem *sh, struct shm_file *f, uint64_t off)
{
        if (!f->map || sh->pagemap_fd < 0)
                return -EOPNOTSUPP;
        char *a = f->map + off;
        struct page_region pr[2];
        struct pm_scan_arg arg = {
                .size = sizeof(arg),
                .start = (uint64_t)(uintptr_t)a,
                .end = (uint64_t)(uintptr_t)a + HP_REGION_SIZE,
                .vec = (uint64_t)(uintptr_t)pr,
                .vec_len = 2,
                .category_mask = PAGE_IS_HUGE,
                .return_mask = PAGE_IS_HUGE,
        };
        int r;

        if (madvise(a, HP_REGION_SIZE, MADV_POPULATE_READ) < 0)
                return -errno;
        long n = ioctl(sh->pagemap_fd, PAGEMAP_SCAN, &arg);
        r = n < 0 ? -errno : n == 1 && pr[0].start == arg.start && pr[0].end == arg.end;
        (void)madvise(a, HP_REGION_SIZE, MADV_DONTNEED);
        return r;
}

/* Put the region's 2 MiB in the file. 0 or -errno. */
static int reserve_region(struct shmem *sh, struct client_shmem *s, struct shm_file *f, uint32_t ri)
{
        uint64_t off = (uint64_t)ri << REGION_SHIFT;

        /* KEEP_SIZE: a file the client truncated stays as short (its
         * faults past the end fail open, and the kernel says SIGBUS) */
        if (fallocate(f->fd, FALLOC_FL_KEEP_SIZE, (off_t)off, HP_REGION_SIZE) < 0)
                return -errno;
        f->regions[ri].flags |= SR_RESERVED;
        s->n[CNT_RESERVATIONS]++;
        int huge = region_is_folio(sh, f, off);
        if (huge == 0) {
                f->regions[ri].flags |= SR_NOHUGE;
                s->n[CNT_NOHUGE]++;
        }
        return 0;
}

/* ---- faults ------------------------------------------------------------------------ */

/* The file and offset addr maps, from the VMA of the last fault or from
 * the client's mappings: 0, or -errno (not a held file). */
static int lookup(struct client *c, struct client_shmem *s, uint64_t addr, struct shm_file **ret, uint64_t *off)
{
        if (!s->vma_file || addr < s->vma_start || addr >= s->vma_end) {
                struct procmap_query q = { .size = sizeof(q), .query_addr = addr };
                if (c->maps_fd < 0 || ioctl(c->maps_fd, PROCMAP_QUERY, &q) < 0)
                        return -errno;
                if (q.vma_start > addr || !(q.vma_flags & PROCMAP_QUERY_VMA_SHARED))
                        return -ENOENT;
                struct shm_file *f = NULL;
                for (unsigned i = 0; i < s->nheld && !f; i++)
                        if (s->held[i]->ino == q.inode && s->held[i]->dev_major == q.dev_major &&
                            s->held[i]->dev_minor == q.dev_minor && s->held[i]->fd >= 0)
                                f = s->held[i];
                if (!f)
                        return -ENOENT;
                s->vma_start = q.vma_start;
                s->vma_end = q.vma_end;
                s->vma_off = q.vma_offset;
                s->vma_file = f;
        }
        *ret = s->vma_file;
        *off = s->vma_off + (addr - s->vma_start);
        return 0;
}

/* No reservation to be had: hand the region to the kernel for good (it
 * allocates the pages itself), and let the thread go. */
static void fail_open(struct client *c, const struct range *rg, uint64_t page, const char *why, int e)
{
        uint64_t rstart = page & ~(HP_REGION_SIZE - 1), rend = rstart + HP_REGION_SIZE;
        if (rstart < rg->start)
                rstart = rg->start;
        if (rend > rg->end)
                rend = rg->end;
        log_notice("client %d: no reservation at %#" PRIx64 " (%s: %s): the kernel handles it", c->pid, page, why,
                   strerror(-e));
        (void)uffd_unregister(c, rstart, rend - rstart);
        fault_drop_span(c, rstart, rend);
        uffd_wake(c, page, HP_PAGE_SIZE);
}

static bool collapse_queue(struct shmem *sh, struct client *c, struct shm_file *f, uint32_t ri, uint64_t addr)
{
        struct collapse_job *j = calloc(1, sizeof(*j));
        if (!j)
                return false;
        *j = (struct collapse_job){ .client_id = c->id, .fds = client_fds_ref(c->fds), .f = f, .region = ri,
                                    .addr = addr };
        f->refs++;
        f->regions[ri].jobs++;
        workq_push(sh->wq, &j->w);
        return true;
}

/* Does client o map region ri of f at addr (a forked child's mapping is
 * where its parent's is)? */
static bool maps_region(struct client *o, struct shm_file *f, uint32_t ri, uint64_t addr)
{
        struct procmap_query q = { .size = sizeof(q), .query_addr = addr };

        if (o->state != CLIENT_READY || o->maps_fd < 0 || ioctl(o->maps_fd, PROCMAP_QUERY, &q) < 0)
                return false;
        return q.vma_start <= addr && q.vma_end >= addr + HP_REGION_SIZE && q.inode == f->ino &&
               q.dev_major == f->dev_major && q.dev_minor == f->dev_minor &&
               q.vma_offset + (addr - q.vma_start) == (uint64_t)ri << REGION_SHIFT &&
               range_covers(&o->ranges, addr, addr + HP_REGION_SIZE);
}

/*
 * The region holds its threshold: collapse it where it is, in c. Once that
 * is done, the first time, the main thread collapses it in every other
 * holder that maps it at the same place (the file's creator and its forked
 * children: the creator may never touch it itself, collapse_done); later,
 * in a client that faults there (its mapping is not PMD-mapped yet).
 */
static void maybe_promote(struct client *c, const struct range *rg, struct shm_file *f, uint32_t ri,
                          uint64_t rstart)
{
        struct shmem *sh = shmem_of(c->m);
        struct shm_region *r = &f->regions[ri];

        if (r->touched < policy_threshold(rg->threshold, &c->policy) || (r->flags & SR_NOCOLLAPSE) || r->jobs ||
            !sh->wq || pressure_level(c->m) != PRESSURE_NONE || rg->start > rstart ||
            rg->end < rstart + HP_REGION_SIZE)
                return;
        (void)collapse_queue(sh, c, f, ri, rstart);
}

static void shmem_fault_locked(struct shmem *sh, struct client *c, struct client_shmem *s, struct range *rg,
                               uint64_t addr, uint64_t t0);

static void shmem_fault(struct client *c, struct range *rg, uint64_t addr, uint64_t t0)
{
        struct shmem *sh = shmem_of(c->m);
        struct client_shmem *s = state_of(c);
        uint64_t page = addr & ~(HP_PAGE_SIZE - 1);

        if (!sh || !s) {
                fail_open(c, rg, page, "not a mapping of a file the daemon holds", -ENOENT);
                return;
        }
        sh_lock(sh);
        shmem_fault_locked(sh, c, s, rg, addr, t0);
        sh_unlock(sh);
}

static void shmem_fault_locked(struct shmem *sh, struct client *c, struct client_shmem *s, struct range *rg,
                               uint64_t addr, uint64_t t0)
{
        uint64_t page = addr & ~(HP_PAGE_SIZE - 1), off = 0;
        struct shm_file *f = NULL;
        int e = lookup(c, s, page, &f, &off);

        if (e < 0) {
                fail_open(c, rg, page, "not a mapping of a file the daemon holds", e);
                return;
        }
        uint32_t ri = (uint32_t)(off >> REGION_SHIFT);
        unsigned sub = (unsigned)((off >> PAGE_SHIFT_4K) & (HP_REGION_PAGES - 1));
        if (ri >= f->nregions) {
                fail_open(c, rg, page, "beyond the end of its file", -ERANGE);
                return;
        }
        struct shm_region *r = &f->regions[ri];
        if (!(r->flags & SR_RESERVED)) {
                e = reserve_region(sh, s, f, ri);
                if (e < 0) {
                        fail_open(c, rg, page, "fallocate", e);
                        return;
                }
        }
        e = uffd_continue(c, page, HP_PAGE_SIZE, true);
        if (e == -EFAULT) {
                /* released since (or truncated by the client): a page of its own */
                off_t at = (off_t)(off & ~(HP_PAGE_SIZE - 1));
                if (fallocate(f->fd, FALLOC_FL_KEEP_SIZE, at, HP_PAGE_SIZE) == 0)
                        e = uffd_continue(c, page, HP_PAGE_SIZE, true);
                if (e == -EFAULT) {
                        fail_open(c, rg, page, "no page in the file", e);
                        return;
                }
        }
        if (e == 0) {
                if (!(r->bits[sub / 64] & (1ull << (sub % 64)))) {
                        r->bits[sub / 64] |= 1ull << (sub % 64);
                        r->touched++;
                }
                s->n[CNT_MAPPED]++;
        } else
                /* -EEXIST (mapped meanwhile), -EAGAIN (an event in flight),
                 * -ENOENT (unmapped): the thread faults again, or not */
                uffd_wake(c, page, HP_PAGE_SIZE);
        fault_served(c, t0);
        maybe_promote(c, rg, f, ri, page & ~(HP_REGION_SIZE - 1));
}

/* ---- collapse jobs (hp-shmem) ------------------------------------------------------- */

static enum work_step collapse_run(struct work *w, void *data)
{
        struct collapse_job *j = (struct collapse_job *)w;
        struct iovec iov = { .iov_base = (void *)(uintptr_t)j->addr, .iov_len = HP_REGION_SIZE };

        if (__atomic_load_n(&j->fds->gone, __ATOMIC_ACQUIRE))
                j->result = -ESRCH;
        else
                j->result = hp_process_madvise(j->fds->pidfd, &iov, 1, MADV_COLLAPSE, 0) < 0 ? -errno : 0;
        return WORK_DONE;
}

static void collapse_free(struct collapse_job *j)
{
        if (j->f->regions[j->region].jobs)
                j->f->regions[j->region].jobs--;
        file_unref(j->f);
        client_fds_unref(j->fds);
        free(j);
}

/* Main thread: the first collapse of region ri of f is done; collapse it
 * in the other clients that hold f and map it at addr too. */
static void collapse_others(struct manager *m, struct shmem *sh, uint64_t done_id, struct shm_file *f, uint32_t ri,
                            uint64_t addr)
{
        for (struct client *o = m->clients; o; o = o->next) {
                if (o->id == done_id || !state_of(o))
                        continue;
                client_lock(o);
                sh_lock(sh);
                struct client_shmem *os = state_of(o);
                if (os && f->fd >= 0 && held_index(os, f) >= 0 && maps_region(o, f, ri, addr))
                        (void)collapse_queue(sh, o, f, ri, addr);
                sh_unlock(sh);
                client_unlock(o);
        }
}

static void collapse_done(struct work *w, void *data)
{
        struct collapse_job *j = (struct collapse_job *)w;
        struct manager *m = data;
        struct shmem *sh = shmem_of(m);
        struct client *c = client_by_id(m, j->client_id);
        bool first = false;

        if (c)
                client_lock(c);
        sh_lock(sh);
        struct client_shmem *s = c && c->state == CLIENT_READY ? state_of(c) : NULL;
        struct shm_region *r = &j->f->regions[j->region];
        if (j->result == 0) {
                if (c)
                        log_debug("client %d: %#" PRIx64 " collapsed in place", c->pid, j->addr);
                first = !(r->flags & SR_HUGE);
                r->flags |= SR_HUGE;
                if (s)
                        s->n[CNT_PROMOTIONS]++;
                else
                        sh->retired[CNT_PROMOTIONS]++;
        } else if (j->result != -ESRCH && s) {
                log_debug_errno(j->result, "client %d: collapse of %#" PRIx64 " in place: %m", c->pid, j->addr);
                if (++r->fails >= COLLAPSE_TRIES)
                        r->flags |= SR_NOCOLLAPSE;
        }
        struct shm_file *f = j->f;
        uint32_t ri = j->region;
        uint64_t addr = j->addr, id = j->client_id;
        f->refs++;              /* past the job's end */
        collapse_free(j);
        sh_unlock(sh);
        if (c)
                client_unlock(c);
        if (first)
                collapse_others(m, sh, id, f, ri, addr);
        sh_lock(sh);
        file_unref(f);
        sh_unlock(sh);
}

static void collapse_drop(struct work *w, void *data)
{
        struct shmem *sh = shmem_of(data);

        sh_lock(sh);
        collapse_free((struct collapse_job *)w);
        sh_unlock(sh);
}

static const struct workq_ops collapse_ops = {
        .run = collapse_run,
        .done = collapse_done,
        .drop = collapse_drop,
};

/* ---- release -------------------------------------------------------------------------- */

static bool page_zero(const char *p)
{
        const uint64_t *v = (const uint64_t *)p;
        for (size_t i = 0; i < HP_PAGE_SIZE / sizeof(*v); i++)
                if (v[i])
                        return false;
        return true;
}

/* Punch the subpages of region ri no client's fault mapped and that read
 * zero; those that do not (written through a mapping we do not serve)
 * count as touched from now on. Subpages released. */
static uint64_t release_region(struct shmem *sh, struct shm_file *f, uint32_t ri)
{
        struct shm_region *r = &f->regions[ri];
        uint64_t off = (uint64_t)ri << REGION_SHIFT, punched = 0;
        ssize_t n = pread(f->fd, sh->scratch, HP_REGION_SIZE, (off_t)off);

        if (n != (ssize_t)HP_REGION_SIZE)
                return 0;
        for (unsigned i = 0; i < HP_REGION_PAGES;) {
                unsigned run = 0;
                while (i + run < HP_REGION_PAGES && !(r->bits[(i + run) / 64] & (1ull << ((i + run) % 64)))) {
                        if (!page_zero((char *)sh->scratch + ((size_t)(i + run) << PAGE_SHIFT_4K))) {
                                r->bits[(i + run) / 64] |= 1ull << ((i + run) % 64);
                                r->touched++;
                                break;
                        }
                        run++;
                }
                if (run && fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                     (off_t)(off + ((uint64_t)i << PAGE_SHIFT_4K)),
                                     (off_t)((uint64_t)run << PAGE_SHIFT_4K)) == 0)
                        punched += run;
                i += run + 1;
        }
        r->flags |= SR_PUNCHED;
        return punched;
}

/* The subpages released, by the files' owners. */
struct released {
        uint64_t owner, n;
};

/* Give back the untouched parts of every reservation not promoted; sh
 * locked. The counts go to the owners' counters once sh is unlocked (a
 * client's lock comes before sh's): *ret, *nret (malloc'ed). */
static uint64_t release_all(struct shmem *sh, struct released **ret, size_t *nret)
{
        uint64_t total = 0;
        size_t cap = 0;

        *ret = NULL;
        *nret = 0;
        for (struct shm_file *f = sh->files; f; f = f->next) {
                uint64_t n = 0;
                for (uint32_t ri = 0; ri < f->nregions; ri++) {
                        const struct shm_region *r = &f->regions[ri];
                        if ((r->flags & SR_RESERVED) && !(r->flags & (SR_HUGE | SR_PUNCHED)) && !r->jobs &&
                            r->touched < HP_REGION_PAGES)
                                n += release_region(sh, f, ri);
                }
                if (!n)
                        continue;
                total += n;
                if (*nret == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        struct released *v = realloc(*ret, ncap * sizeof(*v));
                        if (!v) {
                                sh->retired[CNT_PUNCHED] += n;
                                continue;
                        }
                        *ret = v;
                        cap = ncap;
                }
                (*ret)[(*nret)++] = (struct released){ .owner = f->owner, .n = n };
        }
        return total;
}

static void shmem_pressure(struct manager *m, int level)
{
        struct shmem *sh = shmem_of(m);
        struct released *v;
        size_t nv;

        if (!sh || level == PRESSURE_NONE)
                return;
        sh_lock(sh);
        uint64_t n = release_all(sh, &v, &nv);
        sh_unlock(sh);
        for (size_t i = 0; i < nv; i++) {
                struct client *o = v[i].owner ? client_by_id(m, v[i].owner) : NULL;
                if (o)
                        client_lock(o);
                struct client_shmem *s = o ? state_of(o) : NULL;
                if (s)
                        s->n[CNT_PUNCHED] += v[i].n;
                else {
                        sh_lock(sh);
                        sh->retired[CNT_PUNCHED] += v[i].n;
                        sh_unlock(sh);
                }
                if (o)
                        client_unlock(o);
        }
        free(v);
        if (n) {
                log_info("memory pressure: %" PRIu64 " untouched subpages of shared reservations released", n);
                pressure_released(m, n << PAGE_SHIFT_4K);
        }
}

/* ---- requests ------------------------------------------------------------------------ */

static void refuse(struct client *c, struct client_shmem *s, uint32_t seq, int e, const char *why)
{
        s->n[CNT_REFUSED]++;
        log_debug("client %d: shared file refused: %s", c->pid, why);
        client_reply(c, seq, e, why);
}

static void shmem_create_locked(struct shmem *sh, struct client *c, const void *msg)
{
        const struct hp_shmem_req *req = msg;
        struct manager *m = c->m;
        char why[HP_ERROR_TEXT];

        if (!sh) {
                client_reply(c, req->hdr.seq, -EOPNOTSUPP,
                             "the shmem backend is off (its tmpfs could not be mounted: see the daemon's log)");
                return;
        }
        struct client_shmem *s = state_get(c);
        if (!s) {
                client_reply(c, req->hdr.seq, -ENOMEM, "out of memory");
                return;
        }
        uint64_t size = (req->length + HP_REGION_SIZE - 1) & ~(HP_REGION_SIZE - 1);
        if (s->nheld >= FILES_PER_CLIENT) {
                snprintf(why, sizeof(why), "at most %d shared files per client", FILES_PER_CLIENT);
                refuse(c, s, req->hdr.seq, -EDQUOT, why);
                return;
        }
        uint64_t cap = size_bytes(&m->cfg.shmem_per_client);
        if (cap && (req->length > cap || s->bytes > cap - req->length)) {
                snprintf(why, sizeof(why), "%" PRIu64 " bytes asked, %" PRIu64 " held: over MaxShmemPerClient= "
                         "(%" PRIu64 ")", req->length, s->bytes, cap);
                refuse(c, s, req->hdr.seq, -EDQUOT, why);
                return;
        }
        /* The pages are charged to the daemon: what the client's cgroup
         * would not have let it have, it does not get through us. */
        uint64_t limit, room = memcg_room(&c->memcg, now_ns(), &limit);
        if (room != UINT64_MAX) {
                uint64_t margin = policy_margin(limit, m->cfg.headroom_margin.bytes, m->cfg.headroom_margin.percent);
                uint64_t avail = room > margin ? room - margin : 0;
                if (req->length > avail || s->bytes > avail - req->length) {
                        snprintf(why, sizeof(why), "%" PRIu64 " bytes asked, %" PRIu64 " held: over the room of "
                                 "its memory cgroup (%" PRIu64 " less a margin of %" PRIu64 ")", req->length,
                                 s->bytes, room, margin);
                        refuse(c, s, req->hdr.seq, -EDQUOT, why);
                        return;
                }
        }
        if (size > sh->fs_size || sh->bytes > sh->fs_size - size) {
                snprintf(why, sizeof(why), "the daemon's tmpfs is full: %" PRIu64 " of ShmemMaxSize=%" PRIu64
                         " in use", sh->bytes, sh->fs_size);
                refuse(c, s, req->hdr.seq, -ENOSPC, why);
                return;
        }

        struct shm_file *f = calloc(1, sizeof(*f));
        struct stat st;
        int fd = f ? shmem_fs_create(sh->fs_fd, size) : -ENOMEM;
        if (fd < 0 || fstat(fd, &st) < 0) {
                int e = fd < 0 ? fd : -errno;
                safe_close(fd);
                free(f);
                snprintf(why, sizeof(why), "cannot make a file on the daemon's tmpfs: %s", strerror(-e));
                client_reply(c, req->hdr.seq, e, why);
                return;
        }
        *f = (struct shm_file){ .fd = fd, .dev_major = major(st.st_dev), .dev_minor = minor(st.st_dev),
                                .ino = st.st_ino, .uid = c->uid, .owner = c->id, .length = req->length,
                                .size = size, .nregions = (uint32_t)(size >> REGION_SHIFT) };
        f->regions = calloc(f->nregions, sizeof(*f->regions));
        if (!f->regions || hold(s, f, false) < 0) {
                free(f->regions);
                free(f);
                safe_close(fd);
                client_reply(c, req->hdr.seq, -ENOMEM, "out of memory");
                return;
        }
        f->map = file_map(fd, size);
        f->next = sh->files;
        if (sh->files)
                sh->files->prev = f;
        sh->files = f;
        sh->bytes += size;
        s->bytes += req->length;
        log_debug("client %d: shared file of %" PRIu64 " bytes (inode %" PRIu64 ")", c->pid, req->length, f->ino);
        client_reply_fd(c, req->hdr.seq, fd);
}

static void shmem_create(struct client *c, const void *msg)
{
        struct shmem *sh = shmem_of(c->m);

        if (sh)
                sh_lock(sh);
        shmem_create_locked(sh, c, msg);
        if (sh)
                sh_unlock(sh);
}

/* ---- registration ------------------------------------------------------------------- */

struct reg_check {
        struct shmem *sh;
        const struct client *c;
        struct shm_file *files[FILES_PER_RANGE];
        unsigned n;
};

/* MAP_SHARED of a file the daemon made for this uid, 2 MiB aligned in it */
static int shmem_ok(const struct procmap_query *q, const char *name, void *data, char *why, size_t whylen)
{
        struct reg_check *rc = data;
        struct shm_file *f = file_find(rc->sh, q->dev_major, q->dev_minor, q->inode);

        if (!(q->vma_flags & PROCMAP_QUERY_VMA_SHARED) || !f || f->uid != rc->c->uid) {
                snprintf(why, whylen, "%#llx-%#llx is not a shared mapping of a file hugepaged made for this "
                         "process (%s)", (unsigned long long)q->vma_start, (unsigned long long)q->vma_end,
                         !(q->vma_flags & PROCMAP_QUERY_VMA_SHARED) ? "private" : name[0] ? name : "another file");
                return -EFAULT;
        }
        if ((q->vma_start - q->vma_offset) & (HP_REGION_SIZE - 1)) {
                snprintf(why, whylen, "%#llx-%#llx maps its file at an offset not 2 MiB aligned with the address",
                         (unsigned long long)q->vma_start, (unsigned long long)q->vma_end);
                return -EINVAL;
        }
        for (unsigned i = 0; i < rc->n; i++)
                if (rc->files[i] == f)
                        return 0;
        if (rc->n == FILES_PER_RANGE) {
                snprintf(why, whylen, "the range maps more than %d files", FILES_PER_RANGE);
                return -E2BIG;
        }
        rc->files[rc->n++] = f;
        return 0;
}

static int shmem_register_locked(struct shmem *sh, struct client *c, const struct hp_range_req *req, char *why,
                                 size_t whylen)
{
        uint64_t start = req->addr, end = req->addr + req->length;
        struct reg_check rc = { .sh = sh, .c = c };
        int r;

        if (!sh) {
                snprintf(why, whylen, "the shmem backend is off (its tmpfs could not be mounted)");
                return -EOPNOTSUPP;
        }
        if (c->maps_fd < 0) {
                snprintf(why, whylen, "cannot read the process's mappings");
                return -EOPNOTSUPP;
        }
        r = vma_walk_data(c->maps_fd, start, end, shmem_ok, &rc, "shared memory", why, whylen);
        if (r == -ENOTTY) {
                snprintf(why, whylen, "the shmem backend needs PROCMAP_QUERY (Linux 6.11)");
                return -EOPNOTSUPP;
        }
        if (r < 0)
                return r;
        struct client_shmem *s = state_get(c);
        if (!s) {
                snprintf(why, whylen, "out of memory");
                return -ENOMEM;
        }
        for (unsigned i = 0; i < rc.n; i++)
                if (held_index(s, rc.files[i]) < 0 && s->nheld + rc.n > FILES_PER_CLIENT) {
                        snprintf(why, whylen, "at most %d shared files per client", FILES_PER_CLIENT);
                        return -EDQUOT;
                }
        struct range rg = { .start = start, .end = end, .threshold = req->threshold, .backend = HP_RANGE_SHMEM };
        r = client_register_range(c, &rg, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR,
                                  1ull << _UFFDIO_CONTINUE, why, whylen);
        if (r < 0)
                return r;
        s->vma_file = NULL;
        for (unsigned i = 0; i < rc.n; i++)
                if (hold(s, rc.files[i], true) < 0)
                        log_warning("client %d: out of memory holding a shared file", c->pid);
        return 0;
}

static int shmem_register(struct client *c, const struct hp_range_req *req, char *why, size_t whylen)
{
        struct shmem *sh = shmem_of(c->m);

        if (!sh)
                return shmem_register_locked(NULL, c, req, why, whylen);
        sh_lock(sh);
        int r = shmem_register_locked(sh, c, req, why, whylen);
        sh_unlock(sh);
        return r;
}

/* Files of c's ranges, collected by a walk. */
static int collect_ok(const struct procmap_query *q, const char *name, void *data, char *why, size_t whylen)
{
        struct client_shmem *s = data;
        for (unsigned i = 0; i < s->nheld; i++)
                if (s->held[i]->ino == q->inode && s->held[i]->dev_major == q->dev_major &&
                    s->held[i]->dev_minor == q->dev_minor)
                        s->registered[i] |= 2;  /* seen */
        return 0;
}

/* Memory went away: let go of the files c registered and maps no more. */
static void shmem_span_gone_locked(struct shmem *sh, struct client *c, uint64_t start, uint64_t end)
{
        struct client_shmem *s = state_of(c);
        bool any = false;

        if (!sh || !s)
                return;
        s->vma_file = NULL;
        for (unsigned i = 0; i < s->nheld; i++)
                any |= s->registered[i];
        if (!any)
                return;
        /* the core trimmed the ranges: what they cover is mapped */
        bool complete = true;
        for (size_t k = 0; k < c->ranges.n && complete; k++) {
                const struct range *rg = &c->ranges.v[k];
                char why[160];
                if (rg->backend == HP_RANGE_SHMEM &&
                    vma_walk_data(c->maps_fd, rg->start, rg->end, collect_ok, s, "mapped", why, sizeof(why)) < 0)
                        complete = false;       /* in doubt, hold on */
        }
        for (unsigned i = s->nheld; i-- > 0;) {
                bool seen = s->registered[i] & 2;
                s->registered[i] &= 1;
                if (complete && s->registered[i] && !seen)
                        unhold(sh, c, s, i);
        }
}

static void shmem_span_gone(struct client *c, uint64_t start, uint64_t end)
{
        struct shmem *sh = shmem_of(c->m);

        if (sh)
                sh_lock(sh);
        shmem_span_gone_locked(sh, c, start, end);
        if (sh)
                sh_unlock(sh);
}

/* ---- life ---------------------------------------------------------------------------- */

static void shmem_prepare(struct manager *m)
{
        char why[512] = "";
        struct shmem *sh = calloc(1, sizeof(*sh));

        if (!sh)
                return;
        const char *sock = m->cfg.socket_path, *slash = sock ? strrchr(sock, '/') : NULL;
        char *dir = slash && slash != sock ? strndup(sock, (size_t)(slash - sock)) : NULL;
        sh->fs_size = size_bytes(&m->cfg.shmem_max);
        sh->fs_fd = dir && sh->fs_size ? shmem_fs_open(dir, sh->fs_size, why, sizeof(why)) : -EINVAL;
        free(dir);
        if (sh->fs_fd < 0) {
                log_notice("the shmem backend is off: %s", why[0] ? why : "no runtime directory or ShmemMaxSize=0");
                free(sh);
                return;
        }
        sh->m = m;
        pthread_mutex_init(&sh->lock, NULL);
        sh->pagemap_fd = -1;
        m->backend[HP_RANGE_SHMEM] = sh;
}

static int shmem_start(struct manager *m)
{
        struct shmem *sh = shmem_of(m);

        if (!sh)
                return 0;
        sh->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (sh->pagemap_fd < 0)
                log_full_errno(LOG_NOTICE, errno, "shmem: /proc/self/pagemap: %m: reservations without a "
                               "2 MiB page are not counted");
        sh->scratch = mmap(NULL, HP_REGION_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (sh->scratch == MAP_FAILED)
                sh->scratch = NULL;
        if (!sh->scratch || workq_new(&m->loop, "hp-shmem", 1, &collapse_ops, m, &sh->wq) < 0) {
                log_warning("shmem: no collapse worker: shared memory is served, never promoted");
                sh->wq = NULL;
        }
        log_info("shmem backend: a huge tmpfs of %" PRIu64 " MiB for shared files", sh->fs_size >> 20);
        return 0;
}

/* At exit, after the loop: every client lets go of its files (their
 * mappings keep them), then the tmpfs goes with its last file. */
static void shmem_stop(struct manager *m)
{
        struct shmem *sh = shmem_of(m);

        if (!sh)
                return;
        workq_free(sh->wq);
        for (struct client *c = m->clients; c; c = c->next) {
                struct client_shmem *s = state_of(c);
                while (s && s->nheld)
                        unhold(sh, c, s, s->nheld - 1);
        }
        while (sh->files)
                file_close(sh, sh->files);
        safe_close(sh->pagemap_fd);
        safe_close(sh->fs_fd);
        if (sh->scratch)
                munmap(sh->scratch, HP_REGION_SIZE);
        m->backend[HP_RANGE_SHMEM] = NULL;
        pthread_mutex_destroy(&sh->lock);
        free(sh);
}

static void shmem_client_gone(struct manager *m, struct client *c)
{
        struct shmem *sh = shmem_of(m);
        struct client_shmem *s = state_of(c);

        if (!s)
                return;
        if (sh) {
                sh_lock(sh);
                while (s->nheld)
                        unhold(sh, c, s, s->nheld - 1);
                for (int k = CNT_RESERVATIONS; k < _CNT_MAX; k++)
                        sh->retired[k] += s->n[k];
                sh_unlock(sh);
        }
        free(s->held);
        free(s->registered);
        free(s);
        c->backend[HP_RANGE_SHMEM] = NULL;
}

static const struct backend_counter shmem_counters[] = {
        { "ShmemBytes", "shmem_bytes", true },                          /* shared files held, charged */
        { "ShmemReservations", "shmem_reservations", true },            /* 2 MiB put in a file at a first fault */
        { "ShmemReservationsNoHuge", "shmem_reservations_nohuge", true }, /* ... that got no 2 MiB page */
        { "ShmemSubpagesMapped", "shmem_subpages_mapped", true },       /* 4 KiB mapped by UFFDIO_CONTINUE */
        { "ShmemPromotions", "shmem_promotions", true },                /* collapsed in place */
        { "ShmemSubpagesPunched", "shmem_subpages_punched", true },     /* released under pressure */
        { "ShmemRefused", "shmem_refused", true },                      /* file requests over a budget */
};

static void shmem_read_counters(struct manager *m, const struct client *c, uint64_t *v)
{
        struct shmem *sh = shmem_of(m);

        if (c) {
                const struct client_shmem *s = state_of(c);
                if (s) {
                        memcpy(v, s->n, sizeof(s->n));
                        v[CNT_BYTES] = s->bytes;
                }
                return;
        }
        if (!sh)
                return;
        sh_lock(sh);
        memcpy(v, sh->retired, sizeof(sh->retired));
        v[CNT_BYTES] = sh->bytes;
        sh_unlock(sh);
        for (struct client *l = m->clients; l; l = l->next) {
                client_lock(l);
                const struct client_shmem *s = state_of(l);
                for (int k = CNT_RESERVATIONS; s && k < _CNT_MAX; k++)
                        v[k] += s->n[k];
                client_unlock(l);
        }
}

const struct backend backend_shmem = {
        .name = "shmem",
        .kind = HP_RANGE_SHMEM,
        .prepare = shmem_prepare,
        .start = shmem_start,
        .stop = shmem_stop,
        .register_range = shmem_register,
        /* the child maps the same file: its faults are served the same way */
        .fork_inherits = true,
        .fault = shmem_fault,
        .span_gone = shmem_span_gone,
        .request_type = HP_MSG_SHMEM_CREATE,
        .request = shmem_create,
        .pressure = shmem_pressure,
        .client_gone = shmem_client_gone,
        .counters = shmem_counters,
        .ncounters = sizeof(shmem_counters) / sizeof(shmem_counters[0]),
        .read_counters = shmem_read_counters,
};
