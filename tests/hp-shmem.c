/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hp-shmem: an ordinary program that maps anonymous shared memory, for the
 * shmem backend's test (tests/integration/shmem.py). Plain mmap: the
 * preload shim sees it when it runs under hugepaged-run.
 *
 *   hp-shmem SIZE          the whole story, in steps the test drives:
 *     maps SIZE (a multiple of 4 MiB) MAP_SHARED|MAP_ANONYMOUS; in its first
 *     half writes one page per 2 MiB region (sparse), in its second half
 *     every page (dense); waits until the dense half is PMD-mapped (smaps
 *     ShmemPmdMapped + FilePmdMapped, at most 120 s); prints step=touched
 *     and the mapping's state, then waits for SIGUSR1 (the test releases
 *     meanwhile); prints step=released and the state again; reads every
 *     page of the sparse half (the released ones must read zero), writes
 *     them all, forks a child that writes every page's second word, and
 *     checks everything. Prints key=value lines.
 *   hp-shmem --kill SIZE   writes every 16th page of the first half (regions
 *     reserved, not collapsed), prints step=written,
 *     waits for SIGUSR1 (the test kills the daemon meanwhile), then writes
 *     the second half and checks every page.
 *   hp-shmem --touch SIZE  writes one page per region and checks them, then
 *     makes the mapping executable (exec_ok=).
 *   hp-shmem --file PATH SIZE   MAP_SHARED of a real file: written through
 *     the mapping, read back with pread.
 *   hp-shmem --bad SOCKET  a client of its own (no shim): registers as
 *     HP_RANGE_SHMEM memory that is not a file of the daemon's (anonymous
 *     shared, a memfd, private), then a file the daemon made, and
 *     hugepaged_alloc_shared(); prints each error text.
 *
 * State lines: rss (Rss of the mapping), pmd (its ShmemPmdMapped +
 * FilePmdMapped), file_bytes (blocks of the file it maps, through
 * /proc/self/map_files: root only), map_name (what /proc/self/maps says it
 * maps), all in bytes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "hugepaged.h"

#define PAGE 4096ul
#define HUGE (2ul << 20)

static uint64_t pattern(uint64_t i)
{
        return (i + 1) * 0x9e3779b97f4a7c15ull;
}

static uint64_t parse_size(const char *s)
{
        char *end;
        uint64_t v = strtoull(s, &end, 10);
        if (*end == 'M' || *end == 'm')
                v <<= 20;
        else if (*end == 'G' || *end == 'g')
                v <<= 30;
        return v;
}

struct state {
        long rss, pmd, file_bytes;
        char name[256];
};

static void read_state(const void *p, size_t len, struct state *st)
{
        char line[512], want[64];
        unsigned long lo = 0, hi = 0;
        bool in = false;
        long kb;
        FILE *f = fopen("/proc/self/smaps", "re");

        memset(st, 0, sizeof(*st));
        snprintf(want, sizeof(want), "%lx-", (unsigned long)(uintptr_t)p);
        while (f && fgets(line, sizeof(line), f)) {
                char perms[8], dev[16], name[256] = "";
                unsigned long off, ino;
                if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %255[^\n]", &lo, &hi, perms, &off, dev, &ino, name) >= 6) {
                        in = strncmp(line, want, strlen(want)) == 0;
                        if (in) {
                                snprintf(st->name, sizeof(st->name), "%s", name[0] ? name : "-");
                                for (char *c = st->name; *c; c++)
                                        if (*c == ' ')
                                                *c = '_';
                        }
                        continue;
                }
                if (!in)
                        continue;
                if (sscanf(line, "Rss: %ld kB", &kb) == 1)
                        st->rss += kb * 1024;
                else if (sscanf(line, "ShmemPmdMapped: %ld kB", &kb) == 1 ||
                         sscanf(line, "FilePmdMapped: %ld kB", &kb) == 1)
                        st->pmd += kb * 1024;
        }
        if (f)
                fclose(f);
        char path[128];
        struct stat sb;
        snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)(uintptr_t)p,
                 (unsigned long)(uintptr_t)p + len);
        st->file_bytes = stat(path, &sb) == 0 ? (long)sb.st_blocks * 512 : -1;
}

static void print_state(const char *step, const void *p, size_t len)
{
        struct state st;
        read_state(p, len, &st);
        printf("step=%s\n%s_rss=%ld\n%s_pmd=%ld\n%s_file_bytes=%ld\nmap_name=%s\n", step, step, st.rss, step, st.pmd,
               step, st.file_bytes, st.name);
        fflush(stdout);
}

static void wait_usr1(void)
{
        sigset_t s;
        int sig;
        sigemptyset(&s);
        sigaddset(&s, SIGUSR1);
        sigwait(&s, &sig);
}

/* page i of the sparse half that is written: one per region, at a place
 * that moves with the region */
static bool sparse_page(uint64_t i)
{
        return i % 512 == (i / 512) % 512;
}

/* Anonymous shared memory, as a program maps it (the shim makes it a
 * daemon file); NULL, with mmap_errno= printed, if the mapping fails. */
static uint64_t *map_shared_anon(uint64_t size)
{
        uint64_t *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

        if (m != MAP_FAILED)
                return m;
        printf("mmap_errno=%d\n", errno);
        return NULL;
}

static int story(uint64_t size)
{
        uint64_t *m = map_shared_anon(size);
        uint64_t pages = size / PAGE, half = pages / 2, mismatches = 0, nonzero = 0;
        const uint64_t w = PAGE / sizeof(uint64_t);

        if (!m)
                return 3;
        printf("pid=%d\nsize=%lu\n", (int)getpid(), (unsigned long)size);
        /* an unmap elsewhere (an event the daemon reads) changes nothing here */
        void *other = mmap(NULL, 4 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (other != MAP_FAILED)
                munmap(other, 4 * HUGE);
        for (uint64_t i = 0; i < half; i++)
                if (sparse_page(i))
                        m[i * w] = pattern(i);
        for (uint64_t i = half; i < pages; i++)
                m[i * w] = pattern(i);
        /* the daemon collapses off the fault path: wait for it (a bound for
         * correctness, not a speed target) */
        struct state st;
        for (int k = 0; k < 1200; k++) {
                read_state(m, size, &st);
                if ((uint64_t)st.pmd >= size / 2)
                        break;
                usleep(100000);
        }
        print_state("touched", m, size);
        wait_usr1();
        print_state("released", m, size);

        /* the sparse half: touched pages intact, the others read zero */
        for (uint64_t i = 0; i < half; i++) {
                if (sparse_page(i)) {
                        mismatches += m[i * w] != pattern(i);
                        continue;
                }
                for (uint64_t k = 0; k < w; k++)
                        nonzero += m[i * w + k] != 0;
        }
        for (uint64_t i = 0; i < pages; i++)
                if (i < half && !sparse_page(i))
                        m[i * w] = pattern(i);
        for (uint64_t i = 0; i < pages; i++)
                mismatches += m[i * w] != pattern(i);

        pid_t child = fork();
        if (child == 0) {
                for (uint64_t i = 0; i < pages; i++)
                        m[i * w + 1] = ~pattern(i);
                _exit(0);
        }
        int status = 0;
        uint64_t fork_mismatches = 0;
        if (child < 0 || waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fork_mismatches = pages;
        else
                for (uint64_t i = 0; i < pages; i++)
                        fork_mismatches += m[i * w + 1] != ~pattern(i) || m[i * w] != pattern(i);
        print_state("end", m, size);
        printf("mismatches=%lu\nreleased_nonzero=%lu\nfork_mismatches=%lu\n", (unsigned long)mismatches,
               (unsigned long)nonzero, (unsigned long)fork_mismatches);
        return 0;
}

static int killed(uint64_t size)
{
        uint64_t *m = map_shared_anon(size);
        uint64_t pages = size / PAGE, half = pages / 2, mismatches = 0, nonzero = 0;
        const uint64_t w = PAGE / sizeof(uint64_t);

        if (!m)
                return 3;
        printf("pid=%d\n", (int)getpid());
        /* every 16th page of the first half: reserved regions with holes,
         * below the threshold (not collapsed) */
        for (uint64_t i = 0; i < half; i += 16)
                m[i * w] = pattern(i);
        print_state("written", m, size);
        wait_usr1();
        for (uint64_t i = 0; i < pages; i++) {
                if (i < half && i % 16)
                        for (uint64_t k = 0; k < w; k++)
                                nonzero += m[i * w + k] != 0;
                if (i >= half || i % 16)
                        m[i * w] = pattern(i);
        }
        for (uint64_t i = 0; i < pages; i++)
                mismatches += m[i * w] != pattern(i);
        printf("mismatches=%lu\nnonzero=%lu\n", (unsigned long)mismatches, (unsigned long)nonzero);
        return 0;
}

static int touch(uint64_t size)
{
        uint64_t *m = map_shared_anon(size);
        uint64_t pages = size / PAGE, mismatches = 0;
        const uint64_t w = PAGE / sizeof(uint64_t);

        if (!m)
                return 3;
        printf("pid=%d\n", (int)getpid());
        for (uint64_t i = 0; i < pages; i += 512)
                m[i * w] = pattern(i);
        for (uint64_t i = 0; i < pages; i += 512)
                mismatches += m[i * w] != pattern(i);
        print_state("touch", m, size);
        /* what anonymous shared memory allows, its stand-in must too */
        printf("mismatches=%lu\nexec_ok=%d\n", (unsigned long)mismatches,
               mprotect(m, size, PROT_READ | PROT_EXEC) == 0);
        return 0;
}

static int real_file(const char *path, uint64_t size)
{
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
                printf("open_errno=%d\n", errno);
                return 3;
        }
        uint64_t *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        uint64_t pages = size / PAGE, mismatches = 0, v;
        if (m == MAP_FAILED) {
                printf("mmap_errno=%d\n", errno);
                return 3;
        }
        for (uint64_t i = 0; i < pages; i++)
                m[i * (PAGE / 8)] = pattern(i);
        msync(m, size, MS_SYNC);
        for (uint64_t i = 0; i < pages; i++)
                mismatches += pread(fd, &v, sizeof(v), (off_t)(i * PAGE)) != sizeof(v) || v != pattern(i);
        print_state("file", m, size);
        printf("pid=%d\nfile_mismatches=%lu\n", (int)getpid(), (unsigned long)mismatches);
        return 0;
}

static void say(const char *what, int r, const struct hp_conn *c)
{
        printf("%s=%d\n%s_error=%s\n", what, r, what, r < 0 && c->error[0] ? c->error : "-");
        /* the text on one line, for the test */
}

static int bad(const char *sock)
{
        struct hp_conn c = HP_CONN_NULL;
        int r = hp_conn_open(&c, sock);

        printf("pid=%d\n", (int)getpid());
        if (r < 0) {
                printf("connect=%d\n", r);
                return 3;
        }
        /* anonymous shared memory of the kernel's, 2 MiB aligned */
        char *raw = mmap(NULL, 8 * HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        char *a = (char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
        char *anon = mmap(a, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        say("anon_shared", hp_conn_register_shmem(&c, (uintptr_t)anon, 2 * HUGE, 0), &c);
        int mfd = memfd_create("not-the-daemons", MFD_CLOEXEC);
        if (ftruncate(mfd, 2 * HUGE) < 0)
                return 3;
        char *mf = mmap(a + 2 * HUGE, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, mfd, 0);
        say("memfd", hp_conn_register_shmem(&c, (uintptr_t)mf, 2 * HUGE, 0), &c);
        char *priv = mmap(a + 4 * HUGE, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                          -1, 0);
        say("private", hp_conn_register_shmem(&c, (uintptr_t)priv, 2 * HUGE, 0), &c);
        say("misaligned", hp_conn_register_shmem(&c, (uintptr_t)priv + PAGE, HUGE, 0), &c);

        /* the daemon keeps serving: a file of its own, mapped and registered */
        int fd = -1;
        r = hp_conn_shmem_create(&c, 2 * HUGE, &fd);
        say("create", r, &c);
        if (r == 0) {
                uint64_t *m = mmap(a + 6 * HUGE, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
                say("register", hp_conn_register_shmem(&c, (uintptr_t)m, 2 * HUGE, 0), &c);
                uint64_t mism = 0;
                for (uint64_t i = 0; i < 2 * HUGE / PAGE; i++)
                        m[i * (PAGE / 8)] = pattern(i);
                for (uint64_t i = 0; i < 2 * HUGE / PAGE; i++)
                        mism += m[i * (PAGE / 8)] != pattern(i);
                printf("own_mismatches=%lu\n", (unsigned long)mism);
                close(fd);
        }
        say("too_big", hp_conn_shmem_create(&c, 1ull << 46, &fd), &c);
        hp_conn_close(&c);

        /* libhugepaged */
        struct hugepaged *h = NULL;
        r = hugepaged_connect(sock, &h);
        printf("lib_connect=%d\n", r);
        if (r == 0) {
                int lfd = -1;
                uint64_t *m = hugepaged_alloc_shared(h, 4 * HUGE, &lfd);
                printf("lib_alloc=%s\nlib_aligned=%d\n", m ? "ok" : strerror(errno),
                       m ? ((uintptr_t)m & (HUGE - 1)) == 0 : 0);
                if (m) {
                        uint64_t v = 0, mism = 0;
                        for (uint64_t i = 0; i < 4 * HUGE / PAGE; i++)
                                m[i * (PAGE / 8)] = pattern(i);
                        for (uint64_t i = 0; i < 4 * HUGE / PAGE; i++)
                                mism += pread(lfd, &v, sizeof(v), (off_t)(i * PAGE)) != sizeof(v) || v != pattern(i);
                        printf("lib_fd_mismatches=%lu\n", (unsigned long)mism);
                        hugepaged_free(h, m, 4 * HUGE);
                        close(lfd);
                }
                hugepaged_close(h);
        }
        return 0;
}

int main(int argc, char **argv)
{
        sigset_t s;

        setvbuf(stdout, NULL, _IOLBF, 0);
        sigemptyset(&s);
        sigaddset(&s, SIGUSR1);
        sigprocmask(SIG_BLOCK, &s, NULL);
        if (argc == 2)
                return story(parse_size(argv[1]));
        if (argc == 3 && strcmp(argv[1], "--kill") == 0)
                return killed(parse_size(argv[2]));
        if (argc == 3 && strcmp(argv[1], "--touch") == 0)
                return touch(parse_size(argv[2]));
        if (argc == 4 && strcmp(argv[1], "--file") == 0)
                return real_file(argv[2], parse_size(argv[3]));
        if (argc == 3 && strcmp(argv[1], "--bad") == 0)
                return bad(argv[2]);
        fprintf(stderr, "usage: hp-shmem [--kill|--touch] SIZE | --file PATH SIZE | --bad SOCKET\n");
        return 2;
}
