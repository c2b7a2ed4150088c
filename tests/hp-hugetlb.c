/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hp-hugetlb: an ordinary program that maps MAP_HUGETLB memory, for the
 * hugetlb tests (tests/integration/hugetlb.py). No hugepaged library: plain
 * mmap, which the preload shim sees when it runs under hugepaged-run.
 *
 *   hp-hugetlb [--noreserve] [--steal] [--plain] [--shared|--shm] [--hold SEC] SIZE
 *
 * Maps SIZE (a multiple of 2 MiB) private anonymous MAP_HUGETLB memory,
 * writes a pattern derived from each 4 KiB page's index into every page,
 * verifies every page, and prints key=value lines: pid, size, mismatches,
 * hugetlb_bytes (Private_Hugetlb + Shared_Hugetlb of /proc/self/smaps_rollup,
 * read while the memory is mapped). If the mmap fails it prints
 * mmap_errno=NAME and exits 3.
 *
 * --noreserve adds MAP_NORESERVE. --steal, after the mmap and before the
 * first touch, maps the same size again with the raw system call (out of
 * the shim's sight, so the daemon knows nothing of it) and touches it: the
 * free huge pages are gone before the first mapping's faults (a SIGBUS here
 * without someone growing the pool). --plain maps without MAP_HUGETLB (for
 * HUGEPAGED_BACKEND=hugetlb). --shared maps MAP_SHARED|MAP_ANONYMOUS|
 * MAP_HUGETLB memory instead, --shm a SysV SHM_HUGETLB segment (shmget,
 * shmat); with either, a forked child also writes every page's second word
 * and the parent checks it sees them (fork_mismatches=). --hold keeps the
 * memory mapped for SEC seconds after printing (for killing the daemon
 * meanwhile).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096ul
#define HUGE (2ul << 20)

static uint64_t pattern(uint64_t i)
{
        return (i + 1) * 0x9e3779b97f4a7c15ull;
}

static long smaps_hugetlb(void)
{
        FILE *f = fopen("/proc/self/smaps_rollup", "re");
        char line[256];
        long kb, total = 0;

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Private_Hugetlb: %ld kB", &kb) == 1 || sscanf(line, "Shared_Hugetlb: %ld kB", &kb) == 1)
                        total += kb;
        fclose(f);
        return total * 1024;
}

int main(int argc, char **argv)
{
        int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;
        int steal = 0, hold = 0, shm = 0, i = 1;
        char *end;

        for (; i < argc && argv[i][0] == '-'; i++) {
                if (!strcmp(argv[i], "--noreserve"))
                        flags |= MAP_NORESERVE;
                else if (!strcmp(argv[i], "--steal"))
                        steal = 1;
                else if (!strcmp(argv[i], "--plain"))
                        flags &= ~MAP_HUGETLB;
                else if (!strcmp(argv[i], "--shared"))
                        flags = (flags & ~MAP_PRIVATE) | MAP_SHARED;
                else if (!strcmp(argv[i], "--shm"))
                        shm = 1;
                else if (!strcmp(argv[i], "--hold") && i + 1 < argc)
                        hold = atoi(argv[++i]);
                else
                        break;
        }
        if (i != argc - 1) {
                fprintf(stderr, "usage: hp-hugetlb [--noreserve] [--steal] [--plain] [--shared|--shm] [--hold SEC] SIZE (MiB with M, "
                        "a multiple of 2M)\n");
                return 2;
        }
        size_t len = strtoul(argv[i], &end, 10);
        if (*end == 'M')
                len <<= 20;
        else if (*end == 'G')
                len <<= 30;
        if (len == 0 || len % HUGE) {
                fprintf(stderr, "hp-hugetlb: %s is not a multiple of 2M\n", argv[i]);
                return 2;
        }
        printf("pid=%d\nsize=%zu\n", (int)getpid(), len);
        fflush(stdout);

        char *p;
        if (shm) {
                int id = shmget(IPC_PRIVATE, len, IPC_CREAT | SHM_HUGETLB | 0600);
                if (id < 0) {
                        printf("mmap_errno=%s\n", strerrorname_np(errno));
                        return 3;
                }
                p = shmat(id, NULL, 0);
                shmctl(id, IPC_RMID, NULL);     /* gone with the last detach */
                if (p == (void *)-1) {
                        printf("mmap_errno=%s\n", strerrorname_np(errno));
                        return 3;
                }
        } else {
                p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
                if (p == MAP_FAILED) {
                        printf("mmap_errno=%s\n", strerrorname_np(errno));
                        return 3;
                }
        }
        if (steal) {
                char *q = (char *)syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_NORESERVE, -1, 0);
                if (q == MAP_FAILED) {
                        printf("steal_errno=%s\n", strerrorname_np(errno));
                        return 4;
                }
                for (size_t off = 0; off < len; off += HUGE)
                        q[off] = 1;
                printf("stolen=%zu\n", len);
        }
        uint64_t n = len / PAGE, bad = 0;
        for (uint64_t k = 0; k < n; k++)
                *(uint64_t *)(p + k * PAGE) = pattern(k);
        for (uint64_t k = 0; k < n; k++) {
                uint64_t *w = (uint64_t *)(p + k * PAGE);
                /* the rest of the page is zero: it came from a zeroed source */
                if (w[0] != pattern(k) || w[1] != 0 || w[PAGE / 8 - 1] != 0)
                        bad++;
        }
        if (shm || (flags & MAP_SHARED)) {
                /* shared: what a forked child writes, the parent sees */
                pid_t c = fork();
                if (c == 0) {
                        for (uint64_t k = 0; k < n; k++)
                                ((uint64_t *)(p + k * PAGE))[1] = ~pattern(k);
                        _exit(0);
                }
                int st = 0;
                uint64_t fbad = c > 0 && waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : n;
                for (uint64_t k = 0; k < n && !fbad; k++)
                        if (((uint64_t *)(p + k * PAGE))[1] != ~pattern(k) || *(uint64_t *)(p + k * PAGE) != pattern(k))
                                fbad++;
                printf("fork_mismatches=%llu\n", (unsigned long long)fbad);
                bad += fbad;
        }
        printf("mismatches=%llu\nhugetlb_bytes=%ld\n", (unsigned long long)bad, smaps_hugetlb());
        fflush(stdout);
        if (hold > 0)
                sleep((unsigned)hold);
        return bad ? 1 : 0;
}
