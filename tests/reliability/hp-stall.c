/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hp-stall.c: a client that the fault-isolation test stalls (fault_isolation.py).
 *
 *   hp-stall touch SIZE_MIB
 *       one thread writes a pattern to every page of a SIZE_MIB mapping in
 *       a scattered order (every write a first touch), says "touching=1" once
 *       an eighth is written, then verifies every page. The test stops it
 *       with SIGSTOP while it faults.
 *   hp-stall hold SIZE_MIB
 *       the same writer, and a second thread that keeps the process's mmap
 *       lock busy until SIGUSR1: it maps 256 MiB of shared anonymous memory
 *       with MAP_POPULATE (the populate holds the lock for the whole mapping)
 *       and unmaps it, in a loop. The daemon's work on this client (its
 *       collapses, registering regions again, copies waiting behind a queued
 *       writer) waits for that lock.
 *
 * Prints key=value lines; exit 0 when every page read back what was
 * written, 1 on a mismatch, 2 on a usage or system error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096ul
#define HOLD_SIZE (256ul << 20)
#define STRIDE 7919ul           /* prime: page i*STRIDE mod n visits every page once */

static volatile sig_atomic_t stop_holding;
static uint64_t holds;

static void on_usr1(int sig)
{
        (void)sig;
        stop_holding = 1;
}

static uint64_t pattern(size_t page)
{
        return (uint64_t)page * 0x9E3779B97F4A7C15ull + 1;
}

static void *holder(void *arg)
{
        (void)arg;
        while (!stop_holding) {
                void *p = mmap(NULL, HOLD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE,
                               -1, 0);
                if (p == MAP_FAILED) {
                        fprintf(stderr, "hp-stall: mmap: %s\n", strerror(errno));
                        exit(2);
                }
                munmap(p, HOLD_SIZE);
                holds++;
        }
        return NULL;
}

int main(int argc, char **argv)
{
        if (argc != 3 || (strcmp(argv[1], "touch") && strcmp(argv[1], "hold"))) {
                fprintf(stderr, "usage: hp-stall touch|hold SIZE_MIB\n");
                return 2;
        }
        bool hold = !strcmp(argv[1], "hold");
        size_t size = strtoul(argv[2], NULL, 10) << 20, n = size / PAGE;
        pthread_t t;

        if (n == 0 || n % STRIDE == 0) {
                fprintf(stderr, "hp-stall: bad size\n");
                return 2;
        }
        signal(SIGUSR1, on_usr1);
        uint64_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) {
                fprintf(stderr, "hp-stall: mmap: %s\n", strerror(errno));
                return 2;
        }
        printf("pid=%d\n", (int)getpid());
        fflush(stdout);
        if (hold && pthread_create(&t, NULL, holder, NULL)) {
                fprintf(stderr, "hp-stall: pthread_create failed\n");
                return 2;
        }
        for (size_t i = 0; i < n; i++) {
                size_t page = i * STRIDE % n;
                mem[page * (PAGE / sizeof(*mem))] = pattern(page);
                if (i == n / 8) {
                        printf("touching=1\n");
                        fflush(stdout);
                }
        }
        uint64_t mismatches = 0;
        for (size_t page = 0; page < n; page++)
                if (mem[page * (PAGE / sizeof(*mem))] != pattern(page))
                        mismatches++;
        printf("written=1\n");
        fflush(stdout);
        if (hold) {
                pthread_join(t, NULL);
                printf("holds=%" PRIu64 "\n", holds);
        }
        printf("pages=%zu\nmismatches=%" PRIu64 "\n", n, mismatches);
        return mismatches ? 1 : 0;
}
