/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * main.c: hugepaged's entry point: parse the command line, set up the
 * listening socket, /dev/userfaultfd, the promotion workers and the event
 * loop, then run until SIGTERM/SIGINT. Always runs in the foreground
 * (systemd or a supervisor manages it); never forks.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "compat.h"
#include "hugepaged.h"
#include "log.h"
#include "manager.h"
#include "trace.h"
#include "util.h"

static void help(void)
{
        printf("Usage: hugepaged [OPTIONS]\n"
               "Serve first-touch page faults of client programs from 2 MiB reservations\n"
               "and turn dense regions into transparent huge pages.\n\n"
               "  --socket PATH        listening socket (default " HUGEPAGED_DEFAULT_SOCKET ")\n"
               "  --group NAME         group whose members may connect besides root\n"
               "                       (default hugepaged; \"\" = root only)\n"
               "  --threshold N        pages in use (1..512 of a 2 MiB region) before it is\n"
               "                       promoted to a huge page (default 64)\n"
               "  --max-window N       largest run of 4 KiB pages served per fault (default 64)\n"
               "  --no-dense-predict   never promote at a region's first fault\n"
               "  --workers N          promotion worker threads (default 1)\n"
               "  --max-clients N      connected clients at most (default 4096)\n"
               "  --max-ranges N       registered ranges per client at most (default 65536)\n"
               "  --log-level LEVEL    error|warning|notice|info|debug (default info)\n"
               "  --bus system|session|none\n"
               "                       D-Bus connection for statistics (only none so far)\n"
               "  --foreground         run in the foreground (always the case)\n"
               "  --version            print the version\n");
}

static int parse_uint(const char *opt, const char *s, unsigned lo, unsigned hi, unsigned *ret)
{
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
                fprintf(stderr, "hugepaged: --%s: '%s' is not a number in %u..%u\n", opt, s, lo, hi);
                return -EINVAL;
        }
        *ret = (unsigned)v;
        return 0;
}

static int parse_args(int argc, char **argv, struct config *cfg)
{
        enum { ARG_SOCKET = 0x100, ARG_GROUP, ARG_THRESHOLD, ARG_WINDOW, ARG_NO_DENSE, ARG_WORKERS,
               ARG_MAX_CLIENTS, ARG_MAX_RANGES, ARG_LOG_LEVEL, ARG_BUS, ARG_FOREGROUND, ARG_VERSION };
        static const struct option opts[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "group", required_argument, NULL, ARG_GROUP },
                { "threshold", required_argument, NULL, ARG_THRESHOLD },
                { "max-window", required_argument, NULL, ARG_WINDOW },
                { "no-dense-predict", no_argument, NULL, ARG_NO_DENSE },
                { "workers", required_argument, NULL, ARG_WORKERS },
                { "max-clients", required_argument, NULL, ARG_MAX_CLIENTS },
                { "max-ranges", required_argument, NULL, ARG_MAX_RANGES },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "bus", required_argument, NULL, ARG_BUS },
                { "foreground", no_argument, NULL, ARG_FOREGROUND },
                { "version", no_argument, NULL, ARG_VERSION },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c, r = 0;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        exit(0);
                case ARG_VERSION:
                        printf("hugepaged %s\n", HP_VERSION_STRING);
                        exit(0);
                case ARG_SOCKET:
                        if (optarg[0] != '/' || strlen(optarg) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
                                fprintf(stderr, "hugepaged: --socket: '%s' must be an absolute path shorter than %zu bytes\n",
                                        optarg, sizeof(((struct sockaddr_un *)0)->sun_path));
                                return -EINVAL;
                        }
                        cfg->socket_path = optarg;
                        break;
                case ARG_GROUP:
                        cfg->group = optarg;
                        break;
                case ARG_THRESHOLD:
                        r = parse_uint("threshold", optarg, 1, HP_REGION_PAGES, &cfg->threshold);
                        break;
                case ARG_WINDOW:
                        r = parse_uint("max-window", optarg, 1, HP_REGION_PAGES, &cfg->max_window);
                        break;
                case ARG_NO_DENSE:
                        cfg->dense_predict = false;
                        break;
                case ARG_WORKERS:
                        r = parse_uint("workers", optarg, 1, 64, &cfg->workers);
                        break;
                case ARG_MAX_CLIENTS:
                        r = parse_uint("max-clients", optarg, 1, 1u << 20, &cfg->max_clients);
                        break;
                case ARG_MAX_RANGES:
                        r = parse_uint("max-ranges", optarg, 1, 1u << 24, &cfg->max_ranges);
                        break;
                case ARG_LOG_LEVEL:
                        r = log_parse_level(optarg);
                        if (r < 0) {
                                fprintf(stderr, "hugepaged: --log-level: unknown level '%s'\n", optarg);
                                return r;
                        }
                        log_max_level = r;
                        r = 0;
                        break;
                case ARG_BUS:
                        if (strcmp(optarg, "none") && strcmp(optarg, "system") && strcmp(optarg, "session")) {
                                fprintf(stderr, "hugepaged: --bus: '%s' is not system, session or none\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_FOREGROUND:
                        break;
                default:
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc) {
                fprintf(stderr, "hugepaged: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 0;
}

static int listen_socket(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        char dir[PATH_MAX];

        strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                        return log_error_errno(errno, "cannot create %s: %m", dir);
        }
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "socket: %m");
        /* A socket file left by a daemon that died is stale; a live one is not. */
        _cleanup_close_ int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                return log_error_errno(EADDRINUSE, "another hugepaged is listening on %s", path);
        unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return log_error_errno(errno, "bind %s: %m", path);
        /* Anyone may connect; SO_PEERCRED decides who is served. */
        if (chmod(path, 0666) < 0)
                return log_error_errno(errno, "chmod %s: %m", path);
        if (listen(fd, 128) < 0)
                return log_error_errno(errno, "listen %s: %m", path);
        return take_fd(&fd);
}

static void on_listen(struct watch *w, int revents)
{
        client_accept(w->data);
}

static void on_done(struct watch *w, int revents)
{
        promote_drain_done(w->data);
}

static void on_signal(struct watch *w, int revents)
{
        struct manager *m = w->data;
        struct signalfd_siginfo si;

        while (read(m->signal_fd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                        log_info("signal %d: exiting", si.ssi_signo);
                        loop_exit(&m->loop, 0);
                }
        }
}

static void check_thp_mode(void)
{
        char buf[128] = "";
        _cleanup_close_ int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0) {
                log_warning("transparent huge pages are not available: regions stay at 4 KiB");
                return;
        }
        if (strstr(buf, "[never]"))
                log_notice("THP enabled=never: promotions use MADV_COLLAPSE only");
}

int main(int argc, char **argv)
{
        struct manager m = {
                .cfg = {
                        .socket_path = HUGEPAGED_DEFAULT_SOCKET,
                        .group = "hugepaged",
                        .threshold = 64,
                        .max_window = 64,
                        .dense_predict = true,
                        .workers = 1,
                        .max_clients = 4096,
                        .max_ranges = 65536,
                },
                .listen_fd = -1, .uffd_dev = -1, .signal_fd = -1,
        };
        sigset_t mask;
        int r;

        if (parse_args(argc, argv, &m.cfg) < 0)
                return 2;

        /* Each client holds four fds (socket, pidfd, uffd, maps). */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }

        if (m.cfg.group && m.cfg.group[0]) {
                struct group *g = getgrnam(m.cfg.group);
                if (g) {
                        m.group_gid = g->gr_gid;
                        m.group_valid = true;
                } else
                        log_notice("group '%s' does not exist: only root may connect", m.cfg.group);
        }

        m.uffd_dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (m.uffd_dev < 0)
                return log_error_errno(errno, "cannot open /dev/userfaultfd (needs root and CONFIG_USERFAULTFD): %m"), 1;
        check_thp_mode();
        trace_start(&m.trace);  /* logs whether it runs; the daemon works the same without */
        m.zero_page = mmap(NULL, HP_REGION_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (m.zero_page == MAP_FAILED)
                return log_error_errno(errno, "mmap: %m"), 1;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        m.signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (m.signal_fd < 0)
                return log_error_errno(errno, "signalfd: %m"), 1;

        r = promote_queue_new(&m, m.cfg.workers, &m.pq);
        if (r < 0)
                return log_error_errno(r, "cannot start promotion workers: %m"), 1;
        r = loop_init(&m.loop, 1024);
        if (r < 0)
                return 1;
        m.listen_fd = listen_socket(m.cfg.socket_path);
        if (m.listen_fd < 0)
                return 1;
        if (watch_start(&m.loop, &m.w_listen, m.listen_fd, on_listen, &m) < 0 ||
            watch_start(&m.loop, &m.w_signal, m.signal_fd, on_signal, &m) < 0 ||
            watch_start(&m.loop, &m.w_done, promote_queue_fd(m.pq), on_done, &m) < 0)
                return log_error("cannot start the event loop"), 1;

        log_info("listening on %s (threshold %u, dense prediction %s, %u worker%s)", m.cfg.socket_path,
                 m.cfg.threshold, m.cfg.dense_predict ? "on" : "off", m.cfg.workers, m.cfg.workers == 1 ? "" : "s");
        r = loop_run(&m.loop);

        /* Clients' uffds close with the process: their memory falls back
         * to ordinary kernel faults. */
        unlink(m.cfg.socket_path);
        promote_queue_free(m.pq);
        m.trace = trace_stop(m.trace);
        loop_deinit(&m.loop);
        return r < 0 ? 1 : r;
}
