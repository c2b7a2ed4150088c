/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hp-lifecycle.c: many short client lives, for the leak test in
 * tests/reliability: each child process connects and either completes a
 * normal life (handshake, register, fault, promote, verify, exit) or dies
 * by SIGKILL at one chosen stage:
 *
 *   complete        handshake, register 4 MiB, one region written densely
 *                   (promoted) and one sparsely, verified, exit
 *   connected       killed right after connect(), before hello
 *   hello-sent      after sending hello, before the reply
 *   hello-replied   holding the daemon's /dev/userfaultfd fd
 *   uffd-made       after creating its uffd, before sending it
 *   uffd-sent       after sending the uffd, before the reply
 *   registering     after sending a register request, before the reply
 *   faulting        while 4 threads fault on 32 MiB of registered memory
 *   promoting       right after touching 128 pages of a region (over the
 *                   promotion threshold: a collapse is queued or running)
 *   exit-open       exit(0) with the connection and everything open
 *   closed-early    closes its connection, keeps running a little, exits
 *
 *   hp-lifecycle --socket PATH COUNT [PARALLEL [SEED]]
 *
 * Runs COUNT children, PARALLEL (default 4) at a time, cycling through the
 * stages. Prints count=, per-stage counts, unexpected= (children that did
 * not end as planned: a complete one that failed or saw wrong data, a
 * killed one that exited on its own) and connections= (one per child).
 * Exit status: 0 every child ended as planned, 1 otherwise, 2 usage.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "hpraw.h"

#define MiB (1ull << 20)

enum stage {
        S_COMPLETE, S_CONNECTED, S_HELLO_SENT, S_HELLO_REPLIED, S_UFFD_MADE, S_UFFD_SENT, S_REGISTERING,
        S_FAULTING, S_PROMOTING, S_EXIT_OPEN, S_CLOSED_EARLY, _S_MAX
};

static const char *const stage_names[_S_MAX] = {
        "complete", "connected", "hello-sent", "hello-replied", "uffd-made", "uffd-sent", "registering",
        "faulting", "promoting", "exit-open", "closed-early",
};

static const char *arg_socket;

static void die_now(void)
{
        raise(SIGKILL);
        _exit(99);
}

static char *map_aligned(size_t len)
{
        char *p = mmap(NULL, len + 2 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                _exit(3);
        char *a = (char *)(((uintptr_t)p + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
        return a;
}

struct faulter {
        char *mem;
        size_t len;
        unsigned idx;
};

static void *fault_thread(void *arg)
{
        struct faulter *f = arg;
        for (;;)
                for (size_t i = f->idx * HP_PAGE_SIZE; i < f->len; i += 4 * HP_PAGE_SIZE)
                        f->mem[i]++;
        return NULL;
}

static int child(enum stage st, uint64_t seed)
{
        int devfd = -1, uffd, s, r;

        s = raw_connect(arg_socket);
        if (s < 0)
                return 10;
        if (st == S_CONNECTED)
                die_now();
        struct hp_hello hello = { 0 };
        if (st == S_HELLO_SENT) {
                raw_send(s, &hello, sizeof(hello), HP_MSG_HELLO, 1, true, -1);
                die_now();
        }
        if (raw_hello(s, &devfd, NULL) < 0)
                return 11;
        if (st == S_HELLO_REPLIED)
                die_now();
        uffd = raw_new_uffd(devfd);
        close(devfd);
        if (uffd < 0)
                return 12;
        if (st == S_UFFD_MADE)
                die_now();
        if (st == S_UFFD_SENT) {
                struct hp_header h;
                raw_send(s, &h, sizeof(h), HP_MSG_UFFD, 2, true, uffd);
                close(uffd);
                die_now();
        }
        r = raw_send_uffd(s, uffd, NULL);
        close(uffd);
        if (r < 0)
                return 13;
        if (st == S_CLOSED_EARLY) {
                close(s);
                usleep(2000);
                return 0;
        }

        size_t len = st == S_FAULTING ? 32 * MiB : 4 * MiB;
        char *mem = map_aligned(len);
        if (st == S_REGISTERING) {
                struct hp_range_req req = { .addr = (uintptr_t)mem, .length = len };
                raw_send(s, &req, sizeof(req), HP_MSG_REGISTER, 3, true, -1);
                die_now();
        }
        if (raw_range(s, HP_MSG_REGISTER, (uintptr_t)mem, len, 0, NULL) != 0)
                return 14;
        if (st == S_FAULTING) {
                static struct faulter f[4];
                for (unsigned i = 0; i < 4; i++) {
                        pthread_t t;
                        f[i] = (struct faulter){ .mem = mem, .len = len, .idx = i };
                        pthread_create(&t, NULL, fault_thread, &f[i]);
                }
                usleep((useconds_t)(seed % 3000));
                die_now();
        }
        if (st == S_PROMOTING) {
                for (size_t i = 0; i < 2 * MiB; i += 4 * HP_PAGE_SIZE)
                        mem[i] = 1;
                die_now();
        }
        if (st == S_EXIT_OPEN) {
                mem[0] = 1;
                _exit(0);
        }
        /* complete: region 0 dense, region 1 sparse; verify both */
        for (size_t i = 0; i < 2 * MiB; i += HP_PAGE_SIZE)
                memset(mem + i, (int)(i >> 12) & 0xff, HP_PAGE_SIZE);
        for (size_t i = 2 * MiB; i < 4 * MiB; i += 64 * HP_PAGE_SIZE)
                mem[i] = 7;
        for (size_t i = 0; i < 2 * MiB; i += HP_PAGE_SIZE)
                if (mem[i] != (char)((i >> 12) & 0xff) || mem[i + HP_PAGE_SIZE - 1] != (char)((i >> 12) & 0xff))
                        return 1;
        for (size_t i = 2 * MiB; i < 4 * MiB; i += HP_PAGE_SIZE)
                if (mem[i] != ((i - 2 * MiB) % (64 * HP_PAGE_SIZE) == 0 ? 7 : 0))
                        return 1;
        struct hp_header h;
        struct raw_reply rep;
        raw_send(s, &h, sizeof(h), HP_MSG_GET_STATS, 9, true, -1);
        raw_recv(s, 10000, &rep);
        if (rep.kind != RAW_REPLY)
                return 15;
        close(s);
        return 0;
}

int main(int argc, char **argv)
{
        if (argc < 4 || argc > 6 || strcmp(argv[1], "--socket") != 0) {
                fprintf(stderr, "usage: hp-lifecycle --socket PATH COUNT [PARALLEL [SEED]]\n");
                return 2;
        }
        arg_socket = argv[2];
        unsigned count = (unsigned)strtoul(argv[3], NULL, 10);
        unsigned parallel = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10) : 4;
        uint64_t seed = argc > 5 ? strtoull(argv[5], NULL, 10) : 1;
        unsigned per_stage[_S_MAX] = { 0 }, unexpected = 0, running = 0, started = 0;
        struct { pid_t pid; enum stage st; } *kids = calloc(parallel, sizeof(*kids));

        signal(SIGPIPE, SIG_IGN);
        if (!kids || parallel == 0)
                return 2;
        while (started < count || running > 0) {
                while (started < count && running < parallel) {
                        enum stage st = (enum stage)(started % _S_MAX);
                        uint64_t x = seed * 0x9E3779B97F4A7C15ull + started;
                        pid_t pid = fork();
                        if (pid < 0) {
                                perror("fork");
                                return 2;
                        }
                        if (pid == 0)
                                _exit(child(st, x ^ (x >> 29)));
                        for (unsigned i = 0; i < parallel; i++)
                                if (!kids[i].pid) {
                                        kids[i].pid = pid;
                                        kids[i].st = st;
                                        break;
                                }
                        started++;
                        running++;
                }
                int status;
                pid_t pid = wait(&status);
                if (pid < 0)
                        break;
                for (unsigned i = 0; i < parallel; i++) {
                        if (kids[i].pid != pid)
                                continue;
                        enum stage st = kids[i].st;
                        bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
                        bool planned_kill = st != S_COMPLETE && st != S_EXIT_OPEN && st != S_CLOSED_EARLY;
                        bool ok = planned_kill ? killed : WIFEXITED(status) && WEXITSTATUS(status) == 0;
                        per_stage[st]++;
                        if (!ok) {
                                if (unexpected++ < 10)
                                        fprintf(stderr, "hp-lifecycle: child %d (%s) ended with status %#x\n", pid,
                                                stage_names[st], status);
                        }
                        kids[i].pid = 0;
                        running--;
                }
        }
        printf("count=%u\nconnections=%u\n", count, started);
        for (unsigned i = 0; i < _S_MAX; i++) {
                char key[32];
                snprintf(key, sizeof(key), "%s", stage_names[i]);
                for (char *k = key; *k; k++)
                        if (*k == '-')
                                *k = '_';
                printf("stage_%s=%u\n", key, per_stage[i]);
        }
        printf("unexpected=%u\n", unexpected);
        free(kids);
        return unexpected ? 1 : 0;
}
