/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hp-hostile.c: a client that breaks every rule of the hugepaged protocol,
 * for tests/security. Each subcommand prints `key=value` lines; `battery`
 * also prints one line per case with what the daemon answered.
 *
 *   battery               every malformed message, bad fd, bad range and
 *                         broken handshake, each on its own connection; the
 *                         expected outcome (an error with a given status, or
 *                         being disconnected) is part of each case
 *   random N              N random packets (half with a valid header)
 *   connections N         open N connections at once and hold them
 *   silent MODE           connect and stop (MODE: connect | hello); time
 *                         until the daemon drops the connection
 *   flood MODE SECONDS    MODE: register (pipelined valid requests, replies
 *                         read), noread (the same, replies never read),
 *                         garbage (malformed packets), connect (connection
 *                         churn)
 *   probe SECONDS         a well-behaved client, in a loop: connect,
 *                         handshake, register 16 MiB, write, verify, close;
 *                         reports its worst handshake and cycle times
 *   uffd-maker FD DEVFD   (the battery's helper: another program making a
 *                         uffd and passing it back on FD)
 *
 * Options: --socket PATH (required), --uid UID (switch to UID and its own
 * group before doing anything), --seed N.
 * Exit status: 0 every case as expected / finished, 1 otherwise, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hpraw.h"

#define MiB (1ull << 20)
#define REPLY_MS 5000

static const char *arg_socket;
static uint64_t arg_seed = 1;

static int cases, failed;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
        va_list ap;
        fputs("hp-hostile: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(2);
}

static uint64_t rng_state;
static uint64_t rnd(void)
{
        uint64_t x = (rng_state += 0x9E3779B97F4A7C15ull);
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        return x ^ (x >> 31);
}

static const char *errname(int status)
{
        const char *n = status < 0 ? strerrorname_np(-status) : NULL;
        return n ? n : status == 0 ? "0" : "?";
}

/* ---- outcomes ---------------------------------------------------------- */

enum want { WANT_OK, WANT_ERROR, WANT_ANY_ERROR, WANT_NONE, WANT_ANY };

static bool alive(int sock)
{
        struct hp_header h;
        struct raw_reply r;
        if (raw_send(sock, &h, sizeof(h), HP_MSG_GET_STATS, 99, true, -1) < 0)
                return false;
        raw_recv(sock, REPLY_MS, &r);
        if (r.fd >= 0)
                close(r.fd);
        return r.kind == RAW_REPLY && r.type == HP_MSG_STATS_REPLY;
}

/*
 * Read the daemon's answer to what was just sent on sock and compare:
 * want WANT_OK (a reply with status 0), WANT_ERROR (an error with `status` and a
 * text), WANT_NONE (no answer: the connection just closes), WANT_ANY. Afterwards
 * the connection must be closed (closed = true) or still serve requests.
 */
static void judge(const char *name, const struct raw_reply *rp, bool is_closed, enum want want, int status,
                  bool closed)
{
        struct raw_reply r = *rp;
        char got[300];
        bool ok;

        switch (r.kind) {
        case RAW_REPLY:
                snprintf(got, sizeof(got), "reply %s", errname(r.status));
                break;
        case RAW_ERROR:
                snprintf(got, sizeof(got), "error %s \"%s\"", errname(r.status), r.text);
                break;
        case RAW_CLOSED:
                snprintf(got, sizeof(got), "no answer");
                break;
        case RAW_TIMEOUT:
                snprintf(got, sizeof(got), "no answer within %d ms", REPLY_MS);
                break;
        default:
                snprintf(got, sizeof(got), "a malformed answer");
        }
        switch (want) {
        case WANT_OK:
                ok = r.kind == RAW_REPLY && r.status == 0;
                break;
        case WANT_ERROR:
                ok = r.kind == RAW_ERROR && r.status == status && r.text[0];
                break;
        case WANT_ANY_ERROR:
                ok = r.kind == RAW_ERROR && r.status < 0 && r.text[0];
                break;
        case WANT_NONE:
                ok = r.kind == RAW_CLOSED;
                break;
        default:
                ok = r.kind != RAW_TIMEOUT && r.kind != RAW_OTHER;
        }
        ok = ok && is_closed == closed;
        cases++;
        if (!ok)
                failed++;
        printf("case %-28s %s: %s, %s", name, ok ? "ok  " : "FAIL", got, is_closed ? "disconnected" : "still served");
        if (!ok)
                printf(" (expected %s%s, %s)", want == WANT_OK ? "success" : want == WANT_ERROR ? "error " :
                       want == WANT_ANY_ERROR ? "an error" : want == WANT_NONE ? "no answer" : "any answer",
                       want == WANT_ERROR ? errname(status) : "", closed ? "disconnected" : "still served");
        printf("\n");
        fflush(stdout);
}

static void outcome(const char *name, int sock, enum want want, int status, bool closed)
{
        struct raw_reply r;

        raw_recv(sock, REPLY_MS, &r);
        if (r.fd >= 0)
                close(r.fd);
        bool is_closed = r.kind == RAW_CLOSED || (closed ? raw_closed(sock, REPLY_MS) : !alive(sock));
        judge(name, &r, is_closed, want, status, closed);
}

static int ready(void)
{
        int s = raw_open(arg_socket);
        if (s < 0)
                die("cannot connect and complete the handshake: %s", strerror(-s));
        return s;
}

/* ---- malformed messages on a served connection ------------------------------ */

static void send_bytes(int sock, const void *buf, size_t len, int fd)
{
        (void)hp_send_fd(sock, buf, len, fd);
}

static void case_bytes(const char *name, const void *buf, size_t len, enum want want, int status, bool closed)
{
        int s = ready();
        send_bytes(s, buf, len, -1);
        outcome(name, s, want, status, closed);
        close(s);
}

static void malformed_cases(void)
{
        _Alignas(8) char big[65536];
        struct hp_range_req req;
        struct hp_header h;
        char name[64];

        memset(big, 0x5a, sizeof(big));
        /* truncated: shorter than a header, and a header cut short */
        hp_header_init(&req.hdr, HP_MSG_REGISTER, sizeof(req), 1, 0);
        req.addr = 2 * MiB;
        req.length = 2 * MiB;
        req.backend = 0;
        req.threshold = 0;
        for (size_t n = 1; n < sizeof(struct hp_header); n += 5) {
                snprintf(name, sizeof(name), "truncated-%zu", n);
                case_bytes(name, &req, n, WANT_ERROR, -EBADMSG, false);
        }
        req.hdr.length = sizeof(struct hp_header) + 8;
        case_bytes("truncated-register", &req, sizeof(struct hp_header) + 8, WANT_ERROR, -EMSGSIZE, false);
        /* a zero-length packet reads as end of file */
        case_bytes("empty-packet", big, 0, WANT_NONE, 0, true);
        /* oversized: larger than any message */
        hp_header_init((void *)big, HP_MSG_REGISTER, HP_MSG_MAX + 1, 1, 0);
        case_bytes("oversized-513", big, HP_MSG_MAX + 1, WANT_ERROR, -EMSGSIZE, false);
        case_bytes("oversized-4096", big, 4096, WANT_ERROR, -EMSGSIZE, false);
        case_bytes("oversized-65536", big, sizeof(big), WANT_ERROR, -EMSGSIZE, false);
        /* header fields */
        hp_header_init(&h, HP_MSG_GET_STATS, sizeof(h), 1, 0);
        h.magic = 0x12345678;
        case_bytes("bad-magic", &h, sizeof(h), WANT_ERROR, -EBADMSG, false);
        hp_header_init(&h, HP_MSG_GET_STATS, sizeof(h), 1, 0);
        h.reserved = 1;
        case_bytes("reserved-set", &h, sizeof(h), WANT_ERROR, -EBADMSG, false);
        hp_header_init(&h, HP_MSG_GET_STATS, sizeof(h) + 4, 1, 0);
        case_bytes("length-field-too-big", &h, sizeof(h), WANT_ERROR, -EBADMSG, false);
        hp_header_init(&h, HP_MSG_GET_STATS, 0, 1, 0);
        case_bytes("length-field-zero", &h, sizeof(h), WANT_ERROR, -EBADMSG, false);
        static const uint16_t versions[] = { 0, HP_VERSION + 1, 0xffff };
        for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
                hp_header_init(&h, HP_MSG_GET_STATS, sizeof(h), 1, 0);
                h.version = versions[i];
                snprintf(name, sizeof(name), "version-%u", versions[i]);
                case_bytes(name, &h, sizeof(h), WANT_ERROR, -EPROTONOSUPPORT, false);
        }
        static const uint16_t types[] = { 0, _HP_MSG_MAX, 200, 0x7fff, 0xffff };
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                hp_header_init(&h, (enum hp_msg_type)types[i], sizeof(h), 1, 0);
                snprintf(name, sizeof(name), "unknown-type-%u", types[i]);
                case_bytes(name, &h, sizeof(h), WANT_ERROR, -EOPNOTSUPP, false);
        }
        /* the daemon's own message types, with their right sizes */
        static const uint16_t replies[] = { HP_MSG_HELLO_REPLY, HP_MSG_STATS_REPLY, HP_MSG_REPLY, HP_MSG_ERROR };
        for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
                size_t n = hp_msg_size(replies[i]);
                memset(big, 0, n);
                hp_header_init((void *)big, (enum hp_msg_type)replies[i], (uint32_t)n, 1, 0);
                snprintf(name, sizeof(name), "reply-type-%u", replies[i]);
                case_bytes(name, big, n, WANT_ERROR, -EPROTO, false);
        }
        /* handshake messages once served */
        struct hp_hello hello = { 0 };
        hp_header_init(&hello.hdr, HP_MSG_HELLO, sizeof(hello), 1, 0);
        case_bytes("hello-when-served", &hello, sizeof(hello), WANT_ERROR, -EPROTO, false);
        int p[2];
        if (pipe(p) < 0)
                die("pipe: %m");
        int s = ready();
        hp_header_init(&h, HP_MSG_UFFD, sizeof(h), 1, 0);
        send_bytes(s, &h, sizeof(h), p[0]);
        outcome("uffd-when-served", s, WANT_ERROR, -EPROTO, false);
        close(s);
        /* an fd passed with a message that takes none is closed, not kept */
        s = ready();
        hp_header_init(&h, HP_MSG_GET_STATS, sizeof(h), 1, 0);
        send_bytes(s, &h, sizeof(h), p[0]);
        outcome("fd-with-get-stats", s, WANT_ANY, 0, false);
        close(s);
        close(p[0]);
        close(p[1]);
}

/* ---- ranges ------------------------------------------------------------------------ */

static void *map(size_t len, int prot, int flags)
{
        void *p = mmap(NULL, len, prot, flags | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                die("mmap: %m");
        return p;
}

/* 2 MiB-aligned private anonymous memory */
static char *map_aligned(size_t len)
{
        char *p = map(len + 2 * MiB, PROT_READ | PROT_WRITE, 0);
        char *a = (char *)(((uintptr_t)p + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
        if (a > p)
                munmap(p, (size_t)(a - p));
        munmap(a + len, (size_t)(p + len + 2 * MiB - (a + len)));
        return a;
}

static void case_range(const char *name, int type, uint64_t addr, uint64_t len, uint32_t threshold, uint32_t backend,
                       enum want want, int status)
{
        struct hp_range_req req = { .addr = addr, .length = len, .backend = backend, .threshold = threshold };
        int s = ready();
        raw_send(s, &req, sizeof(req), type, 3, true, -1);
        outcome(name, s, want, status, false);
        close(s);
}

static bool pages_check(char *p, size_t len, uint8_t v)
{
        for (size_t i = 0; i < len; i += HP_PAGE_SIZE)
                if ((uint8_t)p[i] != v || (uint8_t)p[i + HP_PAGE_SIZE - 1] != v)
                        return false;
        return true;
}

static void range_cases(void)
{
        int s;
        char *mem = map_aligned(8 * MiB);
        uint64_t a = (uintptr_t)mem;

        /* valid, then the same and an overlapping range again: the newer
         * registration replaces the older; the data stays */
        s = ready();
        struct raw_reply r;
        int st = raw_range(s, HP_MSG_REGISTER, a, 4 * MiB, 0, &r);
        cases++;
        bool zero = pages_check(mem, 4 * MiB, 0);
        memset(mem, 0xa5, 4 * MiB);
        int st2 = raw_range(s, HP_MSG_REGISTER, a, 4 * MiB, 0, NULL);
        int st3 = raw_range(s, HP_MSG_REGISTER, a + 2 * MiB, 6 * MiB, 0, NULL);
        memset(mem + 4 * MiB, 0x3c, 4 * MiB);
        bool intact = pages_check(mem, 4 * MiB, 0xa5) && pages_check(mem + 4 * MiB, 4 * MiB, 0x3c);
        bool ok = st == 0 && st2 == 0 && st3 == 0 && zero && intact && alive(s);
        failed += !ok;
        printf("case %-28s %s: register %s, again %s, overlapping %s; faults served, data %s\n", "register-overlapping",
               ok ? "ok  " : "FAIL", errname(st), errname(st2), errname(st3), intact && zero ? "intact" : "WRONG");
        close(s);
        munmap(mem, 8 * MiB);

        mem = map_aligned(4 * MiB);
        a = (uintptr_t)mem;
        case_range("misaligned-address", HP_MSG_REGISTER, a + 1, 2 * MiB, 0, 0, WANT_ERROR, -EINVAL);
        case_range("misaligned-length", HP_MSG_REGISTER, a, 2 * MiB + 1, 0, 0, WANT_ERROR, -EINVAL);
        case_range("zero-length", HP_MSG_REGISTER, a, 0, 0, 0, WANT_ERROR, -EINVAL);
        case_range("null-address", HP_MSG_REGISTER, 0, 2 * MiB, 0, 0, WANT_ERROR, -ERANGE);
        case_range("kernel-address", HP_MSG_REGISTER, 0xffff888000000000ull, 2 * MiB, 0, 0, WANT_ERROR, -ERANGE);
        case_range("wrapping-range", HP_MSG_REGISTER, 0xfffffffffffff000ull, 0x2000, 0, 0, WANT_ERROR, -ERANGE);
        case_range("above-user-space", HP_MSG_REGISTER, 0x00fffffffffff000ull, 0x2000, 0, 0, WANT_ERROR, -ERANGE);
        case_range("unmapped-high", HP_MSG_REGISTER, 0x7ffffffff000ull - 0x10000, 0x10000, 0, 0, WANT_ERROR, -EFAULT);
        case_range("threshold-513", HP_MSG_REGISTER, a, 2 * MiB, 513, 0, WANT_ERROR, -ERANGE);
        case_range("unknown-backend", HP_MSG_REGISTER, a, 2 * MiB, 0, 7, WANT_ERROR, -EOPNOTSUPP);
        munmap(mem + 2 * MiB, 2 * MiB);
        case_range("partly-unmapped", HP_MSG_REGISTER, a, 4 * MiB, 0, 0, WANT_ERROR, -EFAULT);
        munmap(mem, 2 * MiB);
        case_range("unmapped", HP_MSG_REGISTER, a, 2 * MiB, 0, 0, WANT_ERROR, -EFAULT);

        int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        void *file = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        case_range("file-mapping", HP_MSG_REGISTER, (uintptr_t)file, 8192, 0, 0, WANT_ERROR, -EFAULT);
        munmap(file, 8192);
        void *shared = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        case_range("shared-anonymous", HP_MSG_REGISTER, (uintptr_t)shared, 2 * MiB, 0, 0, WANT_ERROR, -EFAULT);
        munmap(shared, 2 * MiB);
        volatile char on_stack = 1;
        case_range("stack", HP_MSG_REGISTER, (uintptr_t)&on_stack & ~(HP_PAGE_SIZE - 1), HP_PAGE_SIZE, 0, 0,
                   WANT_ERROR, -EFAULT);
        uint64_t vdso = getauxval(AT_SYSINFO_EHDR);
        if (vdso)
                case_range("vdso", HP_MSG_REGISTER, vdso, HP_PAGE_SIZE, 0, 0, WANT_ERROR, -EFAULT);
        void *none = map(2 * MiB, PROT_NONE, 0);
        case_range("prot-none", HP_MSG_REGISTER, (uintptr_t)none, 2 * MiB, 0, 0, WANT_ANY, 0);
        munmap(none, 2 * MiB);

        /* memory of another process, not mapped in this one */
        int ready_pipe[2], go_pipe[2];
        if (pipe(ready_pipe) < 0 || pipe(go_pipe) < 0)
                die("pipe: %m");
        uint64_t other = 0x5a5a00000000ull;
        pid_t child = fork();
        if (child == 0) {
                void *q = mmap((void *)(uintptr_t)other, 2 * MiB, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
                char c = q == MAP_FAILED ? 'n' : 'y';
                if (q != MAP_FAILED)
                        memset(q, 1, 2 * MiB);
                (void)!write(ready_pipe[1], &c, 1);
                (void)!read(go_pipe[0], &c, 1);
                _exit(0);
        }
        char c = 'n';
        (void)!read(ready_pipe[0], &c, 1);
        if (c == 'y' && msync((void *)(uintptr_t)other, HP_PAGE_SIZE, MS_ASYNC) < 0)
                case_range("another-process-memory", HP_MSG_REGISTER, other, 2 * MiB, 0, 0, WANT_ERROR, -EFAULT);
        (void)!write(go_pipe[1], &c, 1);
        waitpid(child, NULL, 0);
        close(ready_pipe[0]);
        close(ready_pipe[1]);
        close(go_pipe[0]);
        close(go_pipe[1]);

        /* ranges per client: page-sized ranges until the daemon says no */
        size_t n = 64;
        char *pages = map(n * 2 * HP_PAGE_SIZE, PROT_READ | PROT_WRITE, 0);
        s = ready();
        size_t accepted = 0;
        int last = 0;
        for (size_t i = 0; i < n; i++) {
                last = raw_range(s, HP_MSG_REGISTER, (uintptr_t)pages + i * 2 * HP_PAGE_SIZE, HP_PAGE_SIZE, 0, &r);
                if (last < 0)
                        break;
                accepted++;
        }
        cases++;
        ok = last == -ENOSPC && accepted > 0 && accepted < n && alive(s);
        failed += !ok;
        printf("case %-28s %s: %zu ranges accepted, then %s \"%s\"\n", "ranges-per-client", ok ? "ok  " : "FAIL",
               accepted, errname(last), r.text);
        close(s);
        munmap(pages, n * 2 * HP_PAGE_SIZE);

        mem = map_aligned(2 * MiB);
        case_range("unregister-unknown", HP_MSG_UNREGISTER, (uintptr_t)mem, 2 * MiB, 0, 0, WANT_ERROR, -ENOENT);
        case_range("unregister-misaligned", HP_MSG_UNREGISTER, (uintptr_t)mem + 8, 2 * MiB, 0, 0, WANT_ERROR, -EINVAL);
        case_range("sync-kernel-address", HP_MSG_SYNC, 0xffffffff81000000ull, 2 * MiB, 0, 0, WANT_ERROR, -ERANGE);
        case_range("sync-unregistered", HP_MSG_SYNC, (uintptr_t)mem, 2 * MiB, 0, 0, WANT_OK, 0);
        munmap(mem, 2 * MiB);

        static const struct { const char *name; uint32_t threshold, flags; int want; } policies[] = {
                { "policy-threshold-0", 0, 0, -ERANGE },
                { "policy-threshold-513", 513, 0, -ERANGE },
                { "policy-unknown-flags", 64, 0x80000000u, -ERANGE },
                { "policy-valid", 128, 0, 0 },
        };
        for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
                struct hp_policy p = { .threshold = policies[i].threshold, .flags = policies[i].flags };
                s = ready();
                raw_send(s, &p, sizeof(p), HP_MSG_SET_POLICY, 4, true, -1);
                outcome(policies[i].name, s, policies[i].want ? WANT_ERROR : WANT_OK, policies[i].want, false);
                close(s);
        }
}

/* ---- the handshake ------------------------------------------------------------------------ */

/* After HELLO, send `fd` (or none) as the uffd. */
static void case_uffd_fd(const char *name, int fd, enum want want, int status)
{
        struct hp_header h;
        int devfd, s = raw_connect(arg_socket);
        if (s < 0 || raw_hello(s, &devfd, NULL) < 0)
                die("hello failed");
        close(devfd);
        raw_send(s, &h, sizeof(h), HP_MSG_UFFD, 2, true, fd);
        outcome(name, s, want, status, want != WANT_OK);
        close(s);
}

static void handshake_cases(void)
{
        struct hp_range_req req = { .addr = 2 * MiB, .length = 2 * MiB };
        struct hp_header h;
        struct hp_hello hello = { 0 };
        int s, devfd;

        s = raw_connect(arg_socket);
        raw_send(s, &req, sizeof(req), HP_MSG_REGISTER, 1, true, -1);
        outcome("register-before-hello", s, WANT_ERROR, -EPROTO, true);
        close(s);
        s = raw_connect(arg_socket);
        send_bytes(s, "garbage!", 8, -1);
        outcome("garbage-before-hello", s, WANT_ERROR, -EBADMSG, true);
        close(s);
        s = raw_connect(arg_socket);
        raw_send(s, &h, sizeof(h), HP_MSG_UFFD, 1, true, -1);
        outcome("uffd-before-hello", s, WANT_ERROR, -EPROTO, true);
        close(s);
        int pp[2];
        if (pipe(pp) < 0)
                die("pipe: %m");
        s = raw_connect(arg_socket);
        raw_send(s, &h, sizeof(h), HP_MSG_UFFD, 1, true, pp[0]);
        outcome("uffd-with-pipe-before-hello", s, WANT_ERROR, -EPROTO, true);
        close(s);
        close(pp[0]);
        close(pp[1]);
        hello.flags = 1;
        s = raw_connect(arg_socket);
        raw_send(s, &hello, sizeof(hello), HP_MSG_HELLO, 1, true, -1);
        outcome("hello-unknown-flags", s, WANT_ERROR, -EINVAL, true);
        close(s);
        hello.flags = 0;
        hello.reserved = 9;
        s = raw_connect(arg_socket);
        raw_send(s, &hello, sizeof(hello), HP_MSG_HELLO, 1, true, -1);
        outcome("hello-reserved-set", s, WANT_ERROR, -EINVAL, true);
        close(s);
        s = raw_connect(arg_socket);
        if (raw_hello(s, &devfd, NULL) < 0)
                die("hello failed");
        close(devfd);
        raw_send(s, &req, sizeof(req), HP_MSG_REGISTER, 2, true, -1);
        outcome("register-instead-of-uffd", s, WANT_ERROR, -EPROTO, true);
        close(s);

        /* the wrong kind of file where the uffd is expected */
        int p[2], sp[2];
        if (pipe(p) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
                die("pipe: %m");
        case_uffd_fd("uffd-missing", -1, WANT_ERROR, -EBADF);
        case_uffd_fd("uffd-is-pipe", p[0], WANT_ERROR, -EBADF);
        int f = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        case_uffd_fd("uffd-is-regular-file", f, WANT_ERROR, -EBADF);
        close(f);
        f = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        case_uffd_fd("uffd-is-directory", f, WANT_ERROR, -EBADF);
        close(f);
        f = open("/dev/null", O_RDWR | O_CLOEXEC);
        case_uffd_fd("uffd-is-dev-null", f, WANT_ERROR, -EBADF);
        close(f);
        case_uffd_fd("uffd-is-socket", sp[0], WANT_ERROR, -EBADF);
        f = eventfd(0, EFD_CLOEXEC);
        case_uffd_fd("uffd-is-eventfd", f, WANT_ERROR, -EBADF);
        close(f);
        f = memfd_create("hp-hostile", MFD_CLOEXEC);
        case_uffd_fd("uffd-is-memfd", f, WANT_ERROR, -EBADF);
        close(f);
        close(p[0]);
        close(p[1]);
        close(sp[0]);
        close(sp[1]);

        /* the device fd itself, sent back */
        s = raw_connect(arg_socket);
        if (raw_hello(s, &devfd, NULL) < 0)
                die("hello failed");
        raw_send(s, &h, sizeof(h), HP_MSG_UFFD, 2, true, devfd);
        close(devfd);
        outcome("uffd-is-the-device", s, WANT_ERROR, -EBADF, true);
        close(s);

        /* a uffd on which UFFDIO_API was already done (by the client) */
        s = raw_connect(arg_socket);
        if (raw_hello(s, &devfd, NULL) < 0)
                die("hello failed");
        int u = raw_new_uffd(devfd);
        close(devfd);
        struct uffdio_api api = { .api = UFFD_API };
        if (u < 0 || ioctl(u, UFFDIO_API, &api) < 0)
                die("own uffd: %m");
        raw_send(s, &h, sizeof(h), HP_MSG_UFFD, 2, true, u);
        close(u);
        outcome("uffd-api-already-done", s, WANT_ERROR, -EINVAL, true);
        close(s);

        /* a second uffd: one the daemon already serves on another connection */
        int s1 = raw_connect(arg_socket);
        if (raw_hello(s1, &devfd, NULL) < 0)
                die("hello failed");
        u = raw_new_uffd(devfd);
        close(devfd);
        int copy = dup(u);
        int r1 = raw_send_uffd(s1, u, NULL);
        close(u);
        s = raw_connect(arg_socket);
        if (r1 < 0 || raw_hello(s, &devfd, NULL) < 0)
                die("hello failed");
        close(devfd);
        raw_send(s, &h, sizeof(h), HP_MSG_UFFD, 2, true, copy);
        close(copy);
        outcome("uffd-already-in-use", s, WANT_ERROR, -EINVAL, true);
        close(s);
        close(s1);

        /* a uffd made by another process (it acts on that process's memory) */
        s = raw_connect(arg_socket);
        if (raw_hello(s, &devfd, NULL) < 0)
                die("hello failed");
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                die("socketpair: %m");
        pid_t other = fork();
        if (other == 0) {
                /* a different program: its own address space layout */
                char arg[16];
                snprintf(arg, sizeof(arg), "%d", sp[1]);
                int keep = dup(sp[1]), dev = dup(devfd);
                char a1[16], a2[16];
                snprintf(a1, sizeof(a1), "%d", keep);
                snprintf(a2, sizeof(a2), "%d", dev);
                execl("/proc/self/exe", "hp-hostile", "--socket", arg_socket, "uffd-maker", a1, a2, (char *)NULL);
                _exit(127);
        }
        close(devfd);
        close(sp[1]);
        int foreign = -1;
        char byte;
        struct pollfd pf = { .fd = sp[0], .events = POLLIN };
        if (poll(&pf, 1, 10000) == 1)
                (void)hp_recv_fd(sp[0], &byte, 1, &foreign, 0);
        if (foreign < 0)
                die("the helper process sent no uffd");
        raw_send(s, &h, sizeof(h), HP_MSG_UFFD, 2, true, foreign);
        close(foreign);
        outcome("uffd-of-another-process", s, WANT_ERROR, -EPERM, true);
        close(s);
        close(sp[0]);   /* the helper exits */
        waitpid(other, NULL, 0);

        /* two fds: the first is taken as the uffd, the other closed */
        s = raw_connect(arg_socket);
        if (raw_hello(s, &devfd, NULL) < 0)
                die("hello failed");
        u = raw_new_uffd(devfd);
        close(devfd);
        if (pipe(p) < 0)
                die("pipe: %m");
        {
                union { struct cmsghdr h; char b[CMSG_SPACE(2 * sizeof(int))]; } cm;
                struct hp_header uh;
                hp_header_init(&uh, HP_MSG_UFFD, sizeof(uh), 2, 0);
                struct iovec iov = { .iov_base = &uh, .iov_len = sizeof(uh) };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
                                     .msg_controllen = sizeof(cm.b) };
                memset(&cm, 0, sizeof(cm));
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(2 * sizeof(int));
                int fds[2] = { u, p[0] };
                memcpy(CMSG_DATA(c), fds, sizeof(fds));
                (void)sendmsg(s, &mh, MSG_NOSIGNAL);
        }
        close(u);
        close(p[0]);
        close(p[1]);
        outcome("uffd-plus-extra-fd", s, WANT_OK, 0, false);
        close(s);
}

/*
 * Identity comes from the connection, never from what the client says or
 * from a pid that may have been reused.
 */
static void identity_cases(void)
{
        /* The process that connected exits; a child it left the socket to
         * says hello. The peer's pid names nobody (or, once reused, someone
         * else): the daemon must refuse rather than pick a process by pid. */
        int res[2];
        if (pipe(res) < 0)
                die("pipe: %m");
        pid_t m = fork();
        if (m == 0) {
                int s = raw_connect(arg_socket);
                pid_t me = getpid();
                if (fork() == 0) {
                        struct hp_hello h = { 0 };
                        struct raw_reply r;
                        while (getppid() == me)
                                usleep(1000);
                        usleep(100000);         /* the parent is reaped meanwhile */
                        raw_send(s, &h, sizeof(h), HP_MSG_HELLO, 1, true, -1);
                        raw_recv(s, REPLY_MS, &r);
                        if (r.fd >= 0)
                                close(r.fd);
                        bool closed = r.kind == RAW_CLOSED || raw_closed(s, REPLY_MS);
                        (void)!write(res[1], &r, sizeof(r));
                        (void)!write(res[1], &closed, sizeof(closed));
                        _exit(0);
                }
                _exit(0);
        }
        waitpid(m, NULL, 0);
        struct raw_reply r = { .kind = RAW_TIMEOUT };
        bool closed = false;
        struct pollfd pf = { .fd = res[0], .events = POLLIN };
        if (poll(&pf, 1, 30000) == 1 && read(res[0], &r, sizeof(r)) == sizeof(r))
                (void)!read(res[0], &closed, sizeof(closed));
        judge("hello-from-exited-peer", &r, closed, WANT_ANY_ERROR, 0, true);
        close(res[0]);
        close(res[1]);

        /* Forged SCM_CREDENTIALS (root may claim any pid): ignored; the
         * daemon knows this process by SO_PEERCRED. */
        int s = raw_connect(arg_socket);
        struct hp_hello h = { 0 };
        hp_header_init(&h.hdr, HP_MSG_HELLO, sizeof(h), 1, 0);
        union { struct cmsghdr c; char b[CMSG_SPACE(sizeof(struct ucred))]; } cm;
        memset(&cm, 0, sizeof(cm));
        struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_CREDENTIALS;
        c->cmsg_len = CMSG_LEN(sizeof(struct ucred));
        struct ucred fake = { .pid = 1, .uid = 0, .gid = 0 };
        memcpy(CMSG_DATA(c), &fake, sizeof(fake));
        bool forged = sendmsg(s, &mh, MSG_NOSIGNAL) == sizeof(h);
        if (!forged)    /* not permitted (not root): send it plain */
                raw_send(s, &h, sizeof(h), HP_MSG_HELLO, 1, true, -1);
        raw_recv(s, REPLY_MS, &r);
        int u = -1, st = -EPROTO;
        if (r.kind == RAW_REPLY && r.fd >= 0) {
                u = raw_new_uffd(r.fd);
                close(r.fd);
                st = u >= 0 ? raw_send_uffd(s, u, &r) : u;
                if (u >= 0)
                        close(u);
        }
        cases++;
        bool ok = st == 0 && alive(s);
        failed += !ok;
        printf("case %-28s %s: %s, served as pid %d%s\n", "hello-with-forged-pid", ok ? "ok  " : "FAIL",
               forged ? "SCM_CREDENTIALS claimed pid 1" : "could not forge credentials", (int)getpid(),
               ok ? "" : " (expected to be served as itself)");
        printf("forged_pid_served=%d\n", (int)getpid());
        close(s);
}

/* uffd-maker SOCKFD DEVFD: make a uffd in this process and send it back */
static int cmd_uffd_maker(int sock, int devfd)
{
        int u = raw_new_uffd(devfd);
        char byte = 'u';
        if (u < 0 || hp_send_fd(sock, &byte, 1, u) < 0)
                return 1;
        close(u);
        (void)!read(sock, &byte, 1);    /* stay alive until the test is done */
        return 0;
}

static int cmd_battery(void)
{
        malformed_cases();
        range_cases();
        handshake_cases();
        identity_cases();
        printf("cases=%d\nfailed=%d\n", cases, failed);
        return failed ? 1 : 0;
}

/* ---- random packets ----------------------------------------------------------------------- */

static int cmd_random(unsigned n)
{
        unsigned replies = 0, errors = 0, disconnects = 0, timeouts = 0;
        _Alignas(8) char buf[600];
        int s = ready();

        for (unsigned i = 0; i < n; i++) {
                size_t len = 1 + rnd() % sizeof(buf);
                for (size_t k = 0; k < len; k++)
                        buf[k] = (char)rnd();
                if (len >= sizeof(struct hp_header) && (rnd() & 1)) {
                        struct hp_header *h = (void *)buf;
                        uint16_t t = (uint16_t)(rnd() % (_HP_MSG_MAX + 2));
                        size_t want = hp_msg_size(t);
                        if (want && (rnd() & 1))
                                len = want;
                        /* never HELLO/UFFD: those are the handshake */
                        if (t == HP_MSG_HELLO || t == HP_MSG_UFFD)
                                t = HP_MSG_GET_STATS;
                        h->magic = HP_MAGIC;
                        h->version = HP_VERSION;
                        h->type = t;
                        h->length = (uint32_t)len;
                        h->reserved = 0;
                }
                send_bytes(s, buf, len, -1);
                struct raw_reply r;
                raw_recv(s, REPLY_MS, &r);
                if (r.fd >= 0)
                        close(r.fd);
                if (r.kind == RAW_REPLY)
                        replies++;
                else if (r.kind == RAW_ERROR)
                        errors++;
                else if (r.kind == RAW_CLOSED) {
                        disconnects++;
                        close(s);
                        s = ready();
                } else
                        timeouts++;
        }
        bool ok = alive(s);
        close(s);
        printf("packets=%u\nreplies=%u\nerrors=%u\ndisconnects=%u\nunanswered=%u\n", n, replies, errors, disconnects,
               timeouts);
        return ok && timeouts == 0 ? 0 : 1;
}

/* ---- many connections, silent connections ------------------------------------------------ */

static int cmd_connections(unsigned n)
{
        int *fds = calloc(n, sizeof(int));
        unsigned opened = 0, failed_connect = 0, refused = 0, held = 0, dropped = 0;
        char text[HP_ERROR_TEXT + 32] = "";
        double t0 = raw_now_ms();

        for (unsigned i = 0; i < n; i++) {
                fds[i] = raw_connect(arg_socket);
                if (fds[i] < 0) {
                        failed_connect++;
                        continue;
                }
                opened++;
        }
        double t_open = raw_now_ms() - t0;
        /* Those over a limit got an error and were closed at once. */
        for (unsigned i = 0; i < n; i++) {
                if (fds[i] < 0)
                        continue;
                struct raw_reply r;
                raw_recv(fds[i], 0, &r);
                if (r.kind == RAW_TIMEOUT) {
                        held++;
                        continue;
                }
                if (r.kind == RAW_ERROR) {
                        refused++;
                        if (!text[0])
                                snprintf(text, sizeof(text), "%s %s", errname(r.status), r.text);
                }
                close(fds[i]);
                fds[i] = -1;
        }
        printf("connections=%u\nopened=%u\nconnect_failed=%u\nrefused=%u\nheld=%u\nopen_ms=%.0f\nrefusal=%s\n", n,
               opened, failed_connect, refused, held, t_open, text);
        fflush(stdout);
        /* The held ones never say hello: the daemon must drop them. */
        double t1 = raw_now_ms(), last = 0;
        for (unsigned i = 0; i < n; i++) {
                if (fds[i] < 0)
                        continue;
                double left = 120000 - (raw_now_ms() - t1);
                if (raw_closed(fds[i], left > 0 ? (int)left : 0)) {
                        dropped++;
                        last = raw_now_ms() - t1;
                }
                close(fds[i]);
        }
        printf("dropped=%u\ndropped_within_ms=%.0f\n", dropped, last);
        free(fds);
        return 0;
}

static int cmd_silent(const char *mode)
{
        int devfd = -1, s = raw_connect(arg_socket);
        if (s < 0)
                die("connect: %s", strerror(-s));
        double t0 = raw_now_ms();
        if (!strcmp(mode, "hello")) {
                if (raw_hello(s, &devfd, NULL) < 0)
                        die("hello refused");
                close(devfd);
        } else if (strcmp(mode, "connect") != 0)
                die("silent: connect or hello");
        struct raw_reply r;
        raw_recv(s, 120000, &r);
        double t = raw_now_ms() - t0;
        bool closed = r.kind == RAW_CLOSED || (r.kind == RAW_ERROR && raw_closed(s, 5000));
        printf("answer=%s\nstatus=%s\ntext=%s\nclosed=%d\nclosed_after_ms=%.0f\n",
               r.kind == RAW_ERROR ? "error" : r.kind == RAW_CLOSED ? "none" : "other", errname(r.status), r.text,
               closed, t);
        close(s);
        return closed ? 0 : 1;
}

/* ---- floods -------------------------------------------------------------------------------- */

/*
 * Requests as fast as the daemon takes them: up to WINDOW outstanding
 * (an unread reply queue of a few packets is all a client gets: one that
 * never reads is dropped, mode noread shows it).
 */
#define WINDOW 8

static int cmd_flood(const char *mode, double seconds)
{
        double t0 = raw_now_ms(), end = t0 + seconds * 1e3;
        unsigned long sent = 0, replies = 0, errors = 0;
        bool noread = !strcmp(mode, "noread"), garbage = !strcmp(mode, "garbage"), disconnected = false;
        char *mem = map_aligned(4 * MiB);
        _Alignas(8) char buf[HP_MSG_MAX];
        unsigned outstanding = 0;

        if (!strcmp(mode, "connect")) {
                while (raw_now_ms() < end) {
                        int s = raw_connect(arg_socket);
                        if (s < 0)
                                continue;
                        int devfd;
                        if (raw_hello(s, &devfd, NULL) == 0)
                                close(devfd);
                        close(s);
                        sent++;
                }
                printf("mode=connect\nconnections=%lu\n", sent);
                return 0;
        }
        if (!noread && !garbage && strcmp(mode, "register") != 0)
                die("flood: register, noread, garbage or connect");
        int s = ready();
        while (raw_now_ms() < end && !disconnected) {
                while ((noread || outstanding < WINDOW) && raw_now_ms() < end) {
                        size_t len;
                        if (garbage) {
                                len = 1 + rnd() % 100;
                                for (size_t k = 0; k < len; k++)
                                        buf[k] = (char)rnd();
                        } else {
                                struct hp_range_req *req = (void *)buf;
                                memset(req, 0, sizeof(*req));
                                req->addr = (uintptr_t)mem;
                                req->length = 4 * MiB;
                                hp_header_init(&req->hdr, HP_MSG_REGISTER, sizeof(*req), (uint32_t)sent, 0);
                                len = sizeof(*req);
                        }
                        int r = hp_send_fd(s, buf, len, -1);
                        if (r < 0) {
                                disconnected = r == -EPIPE || r == -ECONNRESET;
                                break;
                        }
                        sent++;
                        outstanding++;
                        if (noread) {
                                struct pollfd p = { .fd = s, .events = 0 };
                                if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
                                        disconnected = true;
                                        break;
                                }
                        }
                }
                if (noread || disconnected)
                        continue;
                struct raw_reply rep;
                raw_recv(s, 1000, &rep);
                if (rep.kind == RAW_TIMEOUT)
                        continue;
                if (rep.kind == RAW_CLOSED) {
                        disconnected = true;
                        break;
                }
                outstanding--;
                if (rep.kind == RAW_REPLY)
                        replies++;
                else
                        errors++;
        }
        double t = (raw_now_ms() - t0) / 1e3;
        if (noread && !disconnected)
                disconnected = raw_closed(s, 10000);
        printf("mode=%s\nseconds=%.2f\nsent=%lu\nreplies=%lu\nerrors=%lu\nanswered_per_s=%.0f\n"
               "disconnected=%d\n", mode, t, sent, replies, errors, (double)(replies + errors) / t, disconnected);
        close(s);
        return 0;
}

/* ---- a well-behaved client ------------------------------------------------------------------ */

static int cmd_probe(double seconds)
{
        double end = raw_now_ms() + seconds * 1e3, worst_hs = 0, worst_cycle = 0;
        unsigned long cycles = 0, mismatches = 0, failures = 0;
        size_t len = 16 * MiB;

        do {
                double t0 = raw_now_ms();
                int s = raw_connect(arg_socket);
                int r = s < 0 ? s : raw_handshake(s);
                double hs = raw_now_ms() - t0;
                if (hs > worst_hs)
                        worst_hs = hs;
                if (r < 0) {
                        fprintf(stderr, "probe: handshake: %s\n", strerror(-r));
                        failures++;
                        if (s >= 0)
                                close(s);
                        usleep(100000);
                        continue;
                }
                char *mem = map_aligned(len);
                if (raw_range(s, HP_MSG_REGISTER, (uintptr_t)mem, len, 0, NULL) != 0)
                        failures++;
                for (size_t i = 0; i < len; i += HP_PAGE_SIZE)
                        memset(mem + i, (int)((i >> 12) ^ cycles) & 0xff, HP_PAGE_SIZE);
                for (size_t i = 0; i < len; i += HP_PAGE_SIZE)
                        if ((uint8_t)mem[i] != (uint8_t)(((i >> 12) ^ cycles) & 0xff) ||
                            (uint8_t)mem[i + HP_PAGE_SIZE - 1] != (uint8_t)(((i >> 12) ^ cycles) & 0xff))
                                mismatches++;
                close(s);
                munmap(mem, len);
                double cyc = raw_now_ms() - t0;
                if (cyc > worst_cycle)
                        worst_cycle = cyc;
                cycles++;
        } while (raw_now_ms() < end);
        printf("cycles=%lu\nfailures=%lu\nmismatches=%lu\nworst_handshake_ms=%.1f\nworst_cycle_ms=%.1f\n", cycles,
               failures, mismatches, worst_hs, worst_cycle);
        return failures || mismatches ? 1 : 0;
}

/* ---- main -------------------------------------------------------------------------------------- */

static void become(uid_t uid)
{
        if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)
                die("cannot switch to uid %u: %m", (unsigned)uid);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "socket", required_argument, NULL, 's' },
                { "uid", required_argument, NULL, 'u' },
                { "seed", required_argument, NULL, 'S' },
                {}
        };
        int ch;
        long uid = -1;

        while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (ch) {
                case 's': arg_socket = optarg; break;
                case 'u': uid = strtol(optarg, NULL, 10); break;
                case 'S': arg_seed = strtoull(optarg, NULL, 10); break;
                default: return 2;
                }
        }
        if (!arg_socket || optind >= argc)
                die("usage: hp-hostile --socket PATH [--uid UID] [--seed N] COMMAND [ARGS]");
        rng_state = arg_seed;
        signal(SIGPIPE, SIG_IGN);
        setvbuf(stdout, NULL, _IOLBF, 0);
        const char *cmd = argv[optind];
        argc -= optind + 1;
        argv += optind + 1;
        if (!strcmp(cmd, "uffd-maker") && argc == 2)
                return cmd_uffd_maker(atoi(argv[0]), atoi(argv[1]));
        if (!strcmp(cmd, "connections") && argc == 1) {
                /* while still allowed to raise the hard limit */
                rlim_t n = strtoul(argv[0], NULL, 10) + 64;
                struct rlimit rl = { n, n };
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        die("RLIMIT_NOFILE %lu: %m", (unsigned long)n);
        }
        if (uid >= 0)
                become((uid_t)uid);
        printf("pid=%d\n", (int)getpid());
        if (!strcmp(cmd, "battery") && argc == 0)
                return cmd_battery();
        if (!strcmp(cmd, "random") && argc == 1)
                return cmd_random((unsigned)strtoul(argv[0], NULL, 10));
        if (!strcmp(cmd, "connections") && argc == 1)
                return cmd_connections((unsigned)strtoul(argv[0], NULL, 10));
        if (!strcmp(cmd, "silent") && argc == 1)
                return cmd_silent(argv[0]);
        if (!strcmp(cmd, "flood") && argc == 2)
                return cmd_flood(argv[0], strtod(argv[1], NULL));
        if (!strcmp(cmd, "probe") && argc == 1)
                return cmd_probe(strtod(argv[0], NULL));
        die("unknown command %s", cmd);
}
