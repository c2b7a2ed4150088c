/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * main.c: hugepaged's entry point: parse the command line, set up the
 * listening socket, /dev/userfaultfd, the promotion workers and the event
 * loop, then run until SIGTERM/SIGINT; SIGHUP reloads hugepaged.conf.
 * Always runs in the foreground (systemd or a supervisor manages it); never
 * forks. Settings: built-in defaults < the config file < the command line.
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

#include "backend.h"
#include "bus-thread.h"
#include "client.h"
#include "compat.h"
#include "control.h"
#include "fault-threads.h"
#include "heartbeat.h"
#include "hugepaged.h"
#include "log.h"
#include "manager.h"
#include "notify.h"
#include "pressure.h"
#include "privs.h"
#include "promote.h"
#include "trace.h"
#include "util.h"
#if HAVE_SDBUS
#include "bus.h"
#endif

static enum bus_kind arg_bus = BUS_SYSTEM;
static const char *arg_bus_address;
static bool arg_check_config;

static void help(void)
{
        printf("Usage: hugepaged [OPTIONS]\n"
               "Serve first-touch page faults of client programs from 2 MiB reservations\n"
               "and turn dense regions into transparent huge pages.\n\n"
               "  --config PATH        configuration file (default " HUGEPAGED_DEFAULT_CONFIG ";\n"
               "                       a missing default file means built-in defaults)\n"
               "  --check-config       check the configuration, print nothing if it is valid, exit\n"
               "  --socket PATH        listening socket (default " HUGEPAGED_DEFAULT_SOCKET ")\n"
               "  --group NAME         group whose members may connect besides root\n"
               "                       (default hugepaged; \"\" = root only)\n"
               "  --threshold N        pages in use (1..512 of a 2 MiB region) before it is\n"
               "                       promoted to a huge page (default 64)\n"
               "  --max-window N       largest run of 4 KiB pages served per fault (default 64)\n"
               "  --no-dense-predict   never promote at a region's first fault\n"
               "  --workers N          promotion worker threads (default 1)\n"
               "  --fault-threads N    threads serving faults (default 0: one per online CPU)\n"
               "  --max-clients N      connected clients at most (default 4096)\n"
               "  --max-ranges N       registered ranges per client at most (default 65536)\n"
               "  --log-level LEVEL    error|warning|notice|info|debug (default info)\n"
               "  --bus system|session|none\n"
               "                       where to publish org.hugepaged1 (default system)\n"
               "  --bus-address ADDRESS\n"
               "                       publish on the bus at this D-Bus address instead\n"
               "  --bus-introspect     print the D-Bus interfaces (XML) and exit\n"
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

static int parse_args(int argc, char **argv, struct manager *m)
{
        enum { ARG_SOCKET = 0x100, ARG_GROUP, ARG_THRESHOLD, ARG_WINDOW, ARG_NO_DENSE, ARG_WORKERS, ARG_FAULT_THREADS,
               ARG_MAX_CLIENTS, ARG_MAX_RANGES, ARG_LOG_LEVEL, ARG_BUS, ARG_FOREGROUND, ARG_VERSION,
               ARG_CONFIG, ARG_CHECK_CONFIG, ARG_BUS_ADDRESS, ARG_BUS_INTROSPECT };
        static const struct option opts[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "group", required_argument, NULL, ARG_GROUP },
                { "threshold", required_argument, NULL, ARG_THRESHOLD },
                { "max-window", required_argument, NULL, ARG_WINDOW },
                { "no-dense-predict", no_argument, NULL, ARG_NO_DENSE },
                { "workers", required_argument, NULL, ARG_WORKERS },
                { "fault-threads", required_argument, NULL, ARG_FAULT_THREADS },
                { "max-clients", required_argument, NULL, ARG_MAX_CLIENTS },
                { "max-ranges", required_argument, NULL, ARG_MAX_RANGES },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "bus", required_argument, NULL, ARG_BUS },
                { "bus-address", required_argument, NULL, ARG_BUS_ADDRESS },
                { "bus-introspect", no_argument, NULL, ARG_BUS_INTROSPECT },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "foreground", no_argument, NULL, ARG_FOREGROUND },
                { "version", no_argument, NULL, ARG_VERSION },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        struct config *cfg = &m->cli;
        unsigned set = 0;
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
                        free(cfg->socket_path);
                        if (!(cfg->socket_path = strdup(optarg)))
                                return -ENOMEM;
                        set |= CONFIG_SET_SOCKET;
                        break;
                case ARG_GROUP:
                        /* one group, or "" for none */
                        for (char **g = cfg->allowed_groups; g && *g; g++)
                                free(*g);
                        cfg->allowed_groups[0] = optarg[0] ? strdup(optarg) : NULL;
                        cfg->allowed_groups[1] = NULL;
                        if (optarg[0] && !cfg->allowed_groups[0])
                                return -ENOMEM;
                        set |= CONFIG_SET_ALLOWED_GROUPS;
                        break;
                case ARG_THRESHOLD:
                        r = parse_uint("threshold", optarg, 1, HP_REGION_PAGES, &cfg->threshold);
                        set |= CONFIG_SET_THRESHOLD;
                        break;
                case ARG_WINDOW:
                        r = parse_uint("max-window", optarg, 1, HP_REGION_PAGES, &cfg->max_window);
                        set |= CONFIG_SET_MAX_WINDOW;
                        break;
                case ARG_NO_DENSE:
                        cfg->dense_predict = false;
                        set |= CONFIG_SET_DENSE_PREDICT;
                        break;
                case ARG_WORKERS:
                        r = parse_uint("workers", optarg, 1, 64, &cfg->workers);
                        set |= CONFIG_SET_WORKERS;
                        break;
                case ARG_FAULT_THREADS:
                        r = parse_uint("fault-threads", optarg, 0, 256, &cfg->fault_threads);
                        set |= CONFIG_SET_FAULT_THREADS;
                        break;
                case ARG_MAX_CLIENTS:
                        r = parse_uint("max-clients", optarg, 1, 1u << 20, &cfg->max_clients);
                        set |= CONFIG_SET_MAX_CLIENTS;
                        break;
                case ARG_MAX_RANGES:
                        r = parse_uint("max-ranges", optarg, 1, 1u << 24, &cfg->max_ranges);
                        set |= CONFIG_SET_MAX_RANGES;
                        break;
                case ARG_LOG_LEVEL:
                        r = log_parse_level(optarg);
                        if (r < 0) {
                                fprintf(stderr, "hugepaged: --log-level: unknown level '%s'\n", optarg);
                                return r;
                        }
                        log_max_level = cfg->log_level = r;
                        set |= CONFIG_SET_LOG_LEVEL;
                        r = 0;
                        break;
                case ARG_BUS:
                        if (strcmp(optarg, "none") == 0)
                                arg_bus = BUS_NONE;
                        else if (strcmp(optarg, "system") == 0)
                                arg_bus = BUS_SYSTEM;
                        else if (strcmp(optarg, "session") == 0)
                                arg_bus = BUS_SESSION;
                        else {
                                fprintf(stderr, "hugepaged: --bus: '%s' is not system, session or none\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_BUS_ADDRESS:
                        arg_bus = BUS_ADDRESS;
                        arg_bus_address = optarg;
                        break;
                case ARG_BUS_INTROSPECT:
#if HAVE_SDBUS
                        exit(bus_introspect(stdout) < 0 ? 1 : 0);
#else
                        fprintf(stderr, "hugepaged: built without D-Bus support\n");
                        exit(1);
#endif
                case ARG_CONFIG:
                        m->config_path = optarg;
                        m->config_explicit = true;
                        break;
                case ARG_CHECK_CONFIG:
                        arg_check_config = true;
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
        m->cli_set = set;
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

static void on_control(struct watch *w, int revents)
{
        control_run(w->data);
}

/* When SIGTERM or SIGINT was read: the stop is logged with its duration. */
static uint64_t stop_requested_ns;

static void on_signal(struct watch *w, int revents)
{
        struct manager *m = w->data;
        struct signalfd_siginfo si;

        while (read(m->signal_fd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                        log_info("signal %d: exiting", si.ssi_signo);
                        stop_requested_ns = now_ns();
                        loop_exit(&m->loop, 0);
                } else if (si.ssi_signo == SIGHUP) {
                        log_info("SIGHUP: reloading %s", m->config_path);
                        (void)manager_reload(m, NULL, 0);
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
                .config_path = HUGEPAGED_DEFAULT_CONFIG,
                .listen_fd = -1, .uffd_dev = -1, .signal_fd = -1, .heartbeat_fd = -1,
                .limits = { .timer_fd = -1 },
                .pressure = { .psi_fd = -1, .meminfo_fd = -1 },
        };
        struct config cfg;
        sigset_t mask;
        int r;

        if (config_init(&m.cli) < 0 || parse_args(argc, argv, &m) < 0)
                return 2;
        if (manager_load_config(&m, &cfg, NULL, 0) < 0)
                return 2;
        if (arg_check_config) {
                config_done(&cfg);
                manager_config_done(&m);
                return 0;
        }
        if (manager_apply_config(&m, &cfg, true) < 0)
                return 1;

        /* Each client holds four fds (socket, pidfd, uffd, maps). */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }

        m.uffd_dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (m.uffd_dev < 0)
                return log_error_errno(errno, "cannot open /dev/userfaultfd (needs root and CONFIG_USERFAULTFD): %m"), 1;
        check_thp_mode();
        uint64_t caps_saved;
        if (privs_tracing_begin(&caps_saved) < 0)
                return 1;
        trace_start(&m.trace);  /* logs whether it runs; the daemon works the same without */
        if (privs_tracing_end(caps_saved) < 0)
                return 1;
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

        r = loop_init(&m.loop, 1024);
        if (r < 0)
                return 1;
        m.listen_fd = notify_listen_fd();       /* hugepaged.socket */
        if (m.listen_fd >= 0) {
                m.socket_activated = true;
                if (fcntl(m.listen_fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(m.listen_fd, F_SETFD, FD_CLOEXEC) < 0)
                        return log_error_errno(errno, "socket passed by systemd: %m"), 1;
        } else if (m.listen_fd == -ENOENT)
                m.listen_fd = listen_socket(m.cfg.socket_path);
        if (m.listen_fd < 0)
                return 1;

        pressure_open(&m);      /* a PSI trigger needs root to arm */
        backends_prepare(&m);   /* e.g. the shmem backend's tmpfs mount */

        /* Everything that needs root is done: keep only what serving clients
         * needs (privs.c), before the first thread inherits more. */
        if (privs_drop() < 0)
                return 1;
        /* Every client's faults wait for this process: it must not get a
         * 1/N share of a CPU among N busy clients. Threads created from here
         * on inherit it (on Linux, nice is per thread). */
        if (setpriority(PRIO_PROCESS, 0, m.cfg.nice) < 0)
                log_warning_errno(errno, "cannot set nice %d: %m", m.cfg.nice);
        r = promote_start(&m, m.cfg.workers);
        if (r < 0)
                return log_error_errno(r, "cannot start promotion workers: %m"), 1;
        r = fault_threads_start(&m, m.cfg.fault_threads);
        if (r < 0)
                return log_error_errno(r, "cannot start fault threads: %m"), 1;
        if (watch_start(&m.loop, &m.w_listen, m.listen_fd, on_listen, &m) < 0 ||
            watch_start(&m.loop, &m.w_signal, m.signal_fd, on_signal, &m) < 0)
                return log_error("cannot start the event loop"), 1;

        /* D-Bus runs in its own thread; this thread only hands it snapshots
         * (heartbeat.c) and runs its commands (control.c). */
        if (arg_bus != BUS_NONE) {
                r = bus_thread_start(arg_bus, arg_bus_address, &m.bus);
                if (r < 0)
                        log_warning_errno(r, "D-Bus is off: %m");
                else if (watch_start(&m.loop, &m.w_control, bus_thread_command_fd(m.bus), on_control, &m) < 0)
                        return log_error("cannot start the event loop"), 1;
        }
        if (heartbeat_start(&m) < 0 || limits_start(&m) < 0)
                return 1;
        if (backends_start(&m) < 0 || pressure_start(&m) < 0)
                return 1;

        log_info("listening on %s%s (threshold %u, dense prediction %s, %u worker%s, %u fault thread%s)",
                 m.cfg.socket_path, m.socket_activated ? " (socket activation)" : "", m.cfg.threshold,
                 m.cfg.dense_predict ? "on" : "off", m.cfg.workers, m.cfg.workers == 1 ? "" : "s",
                 fault_threads_count(&m), fault_threads_count(&m) == 1 ? "" : "s");
        notify_ready();
        r = loop_run(&m.loop);
        notify_stopping();
        fault_threads_stop(&m);         /* before the promotion workers and backends they feed */

        /* Clients' uffds close with the process: their memory falls back
         * to ordinary kernel faults. */
        bus_thread_stop(m.bus);
        if (!m.socket_activated)
                unlink(m.cfg.socket_path);
        promote_stop(&m);
        m.trace = trace_stop(m.trace);
        loop_deinit(&m.loop);
        backends_stop(&m);      /* e.g. puts back what it added to the hugetlb pool */
        client_free_all(&m);
        heartbeat_stop(&m);
        limits_stop(&m);
        pressure_stop(&m);
        manager_config_done(&m);
        if (stop_requested_ns)
                log_info("stopped %.1f ms after the signal; clients go on unmanaged",
                         (double)(now_ns() - stop_requested_ns) / 1e6);
        return r < 0 ? 1 : r;
}
