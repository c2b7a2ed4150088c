/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hugepaged-run: run a command with its large anonymous memory (mappings and
 * malloc blocks) managed by hugepaged, through the LD_PRELOAD shim.
 *
 *   hugepaged-run [--socket PATH] [--threshold N] [--min-size SIZE] [--backend anon|hugetlb]
 *                 [--allocator NAME] [--config PATH] [--debug] [--] CMD [ARGS...]
 *
 * Owns: option checking, the HUGEPAGED_* environment of the command, finding
 * the shim and putting it in front of LD_PRELOAD (followed by the allocator
 * chosen, run-allocator.c), and one probe handshake so that a refusal is
 * reported once, here, instead of silently in every process.
 *
 * Must never: change the command's exit status (it execs the command), keep
 * the probe connection open across exec, or refuse to run the command because
 * the daemon is missing or refuses it (fail open: run it unmanaged).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "run-allocator.h"
#include "util.h"

#define PRELOAD_NAME "libhugepaged-preload.so"

#define EXIT_USAGE 2

#define _noreturn_ __attribute__((noreturn))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

static const char *arg_socket;
static const char *arg_threshold;
static const char *arg_min_size;
static const char *arg_backend;
static const char *arg_allocator;
static const char *arg_config;
static bool arg_debug;

static void help(void)
{
        printf("Usage: %s [OPTIONS] [--] CMD [ARGS...]\n"
               "\n"
               "Run CMD with hugepaged managing its large private anonymous memory: the\n"
               "mappings and malloc() blocks of --min-size and more get their first-touch\n"
               "faults served at 4 KiB from 2 MiB reservations, and dense 2 MiB regions\n"
               "become huge pages. CMD needs no change; the programs it starts or execs\n"
               "are managed too, each on its own. Without a daemon, or if the daemon\n"
               "refuses, CMD runs unmanaged.\n"
               "\n"
               "Options:\n"
               "      --socket PATH     the daemon's socket; default: $%s, else\n"
               "                        %s\n"
               "      --threshold N     pages (1..%u) of a 2 MiB region in use before it is\n"
               "                        promoted; default: the daemon's\n"
               "      --min-size SIZE   smallest mapping or malloc() block managed, such as\n"
               "                        2M, 512K or 1G; default: 2M\n"
               "      --backend anon|hugetlb\n"
               "                        hugetlb: mappings that are whole 2 MiB pages become\n"
               "                        MAP_HUGETLB when the daemon can supply the pages\n"
               "                        (see hugepaged-run(1) for the limits); default: anon\n"
               "      --allocator NAME  malloc for CMD: glibc (its own), jemalloc, mimalloc\n"
               "                        or tcmalloc, preloaded after the shim and tuned to\n"
               "                        map large blocks and keep them; default:\n"
               "                        $%s, else Allocator= of [Program:NAME] in\n"
               "                        the configuration, else %s. A program with an\n"
               "                        allocator of its own (or a static one) keeps it\n"
               "      --config PATH     the file Allocator= is read from; default:\n"
               "                        %s\n"
               "      --debug           each process says whether it is managed, and why not\n"
               "  -h, --help            show this help\n"
               "      --version         show the version\n"
               "\n"
               "The options set %s, %s, %s, %s and\n"
               "%s in CMD's environment, where the shim reads them; setting\n"
               "them directly with LD_PRELOAD has the same effect. %s\n"
               "overrides where the shim is loaded from.\n"
               "\n"
               "Exit status: CMD's (hugepaged-run becomes CMD); 127 if CMD is not found,\n"
               "126 if it cannot be run, 2 for a usage error.\n",
               program_invocation_short_name, HP_ENV_SOCKET, HUGEPAGED_DEFAULT_SOCKET, HP_REGION_PAGES,
               HP_ENV_ALLOCATOR, hp_allocator_names[HP_ALLOCATOR_DEFAULT], HUGEPAGED_DEFAULT_CONFIG,
               HP_ENV_SOCKET, HP_ENV_THRESHOLD, HP_ENV_MIN_SIZE, HP_ENV_BACKEND, HP_ENV_DEBUG, HP_ENV_PRELOAD);
}

_noreturn_ _printf_(1, 2)
static void usage_error(const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "%s: ", program_invocation_short_name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry '%s --help' for more information.\n", program_invocation_short_name);
        exit(EXIT_USAGE);
}

static int parse_argv(int argc, char *argv[])
{
        enum { ARG_SOCKET = 0x100, ARG_THRESHOLD, ARG_MIN_SIZE, ARG_DEBUG, ARG_VERSION, ARG_BACKEND,
               ARG_ALLOCATOR, ARG_CONFIG };
        static const struct option options[] = {
                { "socket",    required_argument, NULL, ARG_SOCKET },
                { "threshold", required_argument, NULL, ARG_THRESHOLD },
                { "min-size",  required_argument, NULL, ARG_MIN_SIZE },
                { "backend",   required_argument, NULL, ARG_BACKEND },
                { "allocator", required_argument, NULL, ARG_ALLOCATOR },
                { "config",    required_argument, NULL, ARG_CONFIG },
                { "debug",     no_argument,       NULL, ARG_DEBUG },
                { "help",      no_argument,       NULL, 'h' },
                { "version",   no_argument,       NULL, ARG_VERSION },
                {}
        };
        uint64_t size;
        unsigned threshold;
        int c;

        /* '+': stop at CMD, its options are its own */
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_SOCKET:
                        if (!*optarg)
                                usage_error("--socket needs a path");
                        arg_socket = optarg;
                        break;
                case ARG_THRESHOLD:
                        if (hp_parse_threshold(optarg, 1, &threshold) < 0)
                                usage_error("invalid --threshold '%s': expected a number of pages, 1..%u",
                                            optarg, HP_REGION_PAGES);
                        arg_threshold = optarg;
                        break;
                case ARG_MIN_SIZE:
                        if (hp_parse_size(optarg, &size) < 0 || size == 0 || size > SIZE_MAX / 4)
                                usage_error("invalid --min-size '%s': expected a size such as 2M, 512K or 1G",
                                            optarg);
                        arg_min_size = optarg;
                        break;
                case ARG_BACKEND:
                        if (strcmp(optarg, "anon") != 0 && strcmp(optarg, "hugetlb") != 0)
                                usage_error("invalid --backend '%s': expected anon or hugetlb", optarg);
                        arg_backend = optarg;
                        break;
                case ARG_ALLOCATOR:
                        if (hp_allocator_from_name(optarg) < 0)
                                usage_error("invalid --allocator '%s': expected " HP_ALLOCATOR_LIST, optarg);
                        arg_allocator = optarg;
                        break;
                case ARG_CONFIG:
                        if (!*optarg)
                                usage_error("--config needs a path");
                        arg_config = optarg;
                        break;
                case ARG_DEBUG:
                        arg_debug = true;
                        break;
                case 'h':
                        help();
                        exit(EXIT_SUCCESS);
                case ARG_VERSION:
                        printf("hugepaged-run %s\n", HP_PROJECT_VERSION);
                        exit(EXIT_SUCCESS);
                default:
                        /* getopt printed what was wrong */
                        fprintf(stderr, "Try '%s --help' for more information.\n",
                                program_invocation_short_name);
                        exit(EXIT_USAGE);
                }
        }
        if (optind >= argc)
                usage_error("no command given");
        return optind;
}

static bool file_exists(const char *path)
{
        return access(path, R_OK) == 0;
}

/*
 * Where the shim is: $HUGEPAGED_PRELOAD; else the build tree's, when this
 * executable runs from a build tree (tools/../libclient/); else the installed
 * one. The build tree comes first so that a fresh build never loads an older
 * installed shim; an installed hugepaged-run has no ../libclient/ beside it.
 * Returns a malloc'ed absolute path or NULL (having said why).
 */
static char *preload_find(void)
{
        char exe[PATH_MAX], candidate[PATH_MAX + sizeof("/../libclient/" PRELOAD_NAME)];
        const char *e;
        char *slash;
        ssize_t n;

        e = getenv(HP_ENV_PRELOAD);
        if (e && *e) {
                char *p = realpath(e, NULL);
                if (!p || !file_exists(p)) {
                        fprintf(stderr, "%s: %s=%s: %m, running unmanaged\n",
                                program_invocation_short_name, HP_ENV_PRELOAD, e);
                        free(p);
                        return NULL;
                }
                return p;
        }

        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n > 0) {
                exe[n] = '\0';
                slash = strrchr(exe, '/');
                if (slash) {
                        *slash = '\0';
                        snprintf(candidate, sizeof(candidate), "%s/../libclient/%s", exe, PRELOAD_NAME);
                        if (file_exists(candidate))
                                return realpath(candidate, NULL);
                }
        }

        if (file_exists(HP_PRELOAD_INSTALLED))
                return strdup(HP_PRELOAD_INSTALLED);

        fprintf(stderr, "%s: cannot find %s (not installed, or set %s), running unmanaged\n",
                program_invocation_short_name, HP_PRELOAD_INSTALLED, HP_ENV_PRELOAD);
        return NULL;
}

/* Is path already one of the entries of LD_PRELOAD (separated by ':' or ' ')? */
static bool preload_has(const char *list, const char *path)
{
        size_t len = strlen(path);

        for (const char *p = list; *p; ) {
                size_t n = strcspn(p, ": ");
                if (n == len && memcmp(p, path, len) == 0)
                        return true;
                p += n;
                p += strspn(p, ": ");
        }
        return false;
}

/*
 * Put the shim first in LD_PRELOAD and the allocator library (if any) right
 * after it, keeping what is there. The order matters: the shim must come
 * before the allocator, so that the allocator's own mmap() calls bind to the
 * shim's mmap (tcmalloc even defines mmap itself, which would otherwise hide
 * the shim's), and the shim's malloc family forwards every call to the
 * allocator it finds next (malloc.c: a malloc that is not glibc's is never
 * taken over). 0 or -errno; -EINVAL: a path has a separator and cannot be an
 * LD_PRELOAD entry.
 */
static int preload_add(const char *shim, const char *allocator)
{
        const char *old = getenv("LD_PRELOAD");
        _cleanup_free_ char *value = NULL;
        size_t len, n;
        char *w;

        if (strpbrk(shim, ": ") || (allocator && strpbrk(allocator, ": ")))
                return -EINVAL;
        if (!old)
                old = "";
        if (!allocator && preload_has(old, shim))
                return 0;       /* as before --allocator: a shim already there stays where it is */
        /* shim, allocator, then the old entries without those two (a nested
         * hugepaged-run, or a user's own LD_PRELOAD naming them) */
        len = strlen(shim) + (allocator ? strlen(allocator) + 1 : 0) + strlen(old) + 2;
        value = malloc(len);
        if (!value)
                return -ENOMEM;
        w = value + sprintf(value, "%s%s%s", shim, allocator ? ":" : "", allocator ? allocator : "");
        for (const char *p = old; *p; p += n, p += strspn(p, ": ")) {
                n = strcspn(p, ": ");
                if (n == 0)
                        continue;
                if ((n == strlen(shim) && memcmp(p, shim, n) == 0) ||
                    (allocator && n == strlen(allocator) && memcmp(p, allocator, n) == 0))
                        continue;
                w += sprintf(w, ":%.*s", (int)n, p);
        }
        if (strcmp(value, old) == 0)
                return 0;
        if (setenv("LD_PRELOAD", value, 1) < 0)
                return -errno;
        return 0;
}

static void config_report_allocator(void *userdata, int level, const char *msg)
{
        /* the rest of the file is the daemon's business: it reports it */
        if (level <= LOG_WARNING && strstr(msg, ": Allocator: "))
                fprintf(stderr, "%s: %s\n", program_invocation_short_name, msg);
}

/* Allocator= of [Program:name] in the configuration file, or -1. */
static int config_allocator(const char *name)
{
        const char *path = arg_config ? arg_config : HUGEPAGED_DEFAULT_CONFIG;
        const struct config_program *p;
        struct config c;
        int r, a = -1;

        if (config_init(&c) < 0)
                return -1;
        r = config_load(&c, path, config_report_allocator, NULL);
        if (r < 0 && r != -EINVAL) {
                if (arg_config || (arg_debug && r != -ENOENT))
                        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, path, strerror(-r));
        } else {
                p = config_find_program(&c, name);
                if (p)
                        a = p->allocator;
                if (arg_debug && a >= 0)
                        fprintf(stderr, "%s: %s: [Program:%s] Allocator=%s\n", program_invocation_short_name,
                                path, name, hp_allocator_names[a]);
        }
        config_done(&c);
        return a;
}

/*
 * The allocator for CMD: --allocator, else $HUGEPAGED_ALLOCATOR, else the
 * configuration's [Program:NAME] Allocator= (NAME: the file name of the
 * executable, symbolic links resolved, as the daemon matches it), else the
 * default. Returns the path of its library to preload, or NULL for none (the
 * allocator is glibc, the program brings its own, or the library is missing:
 * said always for a missing library, else with --debug).
 */
static char *allocator_choose(const char *cmd)
{
        _cleanup_free_ char *exe = allocator_which(cmd);
        const char *env = getenv(HP_ENV_ALLOCATOR), *from;
        const char *name = exe ? strrchr(exe, '/') + 1 : cmd;
        char why[256] = "";
        char *lib;
        int a, r;

        if (arg_allocator) {
                a = hp_allocator_from_name(arg_allocator);
                from = "--allocator";
        } else if (env && *env) {
                a = hp_allocator_from_name(env);
                from = HP_ENV_ALLOCATOR;
                if (a < 0) {
                        fprintf(stderr, "%s: %s=%s: expected " HP_ALLOCATOR_LIST ", using %s\n",
                                program_invocation_short_name, HP_ENV_ALLOCATOR, env,
                                hp_allocator_names[HP_ALLOCATOR_DEFAULT]);
                        a = HP_ALLOCATOR_DEFAULT;
                        from = "the default";
                }
        } else if ((a = config_allocator(name)) >= 0)
                from = "the configuration";
        else {
                a = HP_ALLOCATOR_DEFAULT;
                from = "the default";
        }
        if (a == HP_ALLOCATOR_GLIBC) {
                if (arg_debug)
                        fprintf(stderr, "%s: allocator glibc (%s): %s keeps its own malloc\n",
                                program_invocation_short_name, from, name);
                return NULL;
        }

        r = exe ? allocator_program_has_own(exe, why, sizeof(why)) : -ENOENT;
        if (r > 0) {
                if (arg_debug)
                        fprintf(stderr, "%s: allocator %s (%s) not loaded: %s has its own allocator (%s)\n",
                                program_invocation_short_name, hp_allocator_names[a], from, name, why);
                return NULL;
        }
        if (r < 0 && arg_debug)
                fprintf(stderr, "%s: %s: not an ELF program (%s), allocator %s loaded for what it runs\n",
                        program_invocation_short_name, exe ? exe : cmd, strerror(-r), hp_allocator_names[a]);

        lib = allocator_find_library(a);
        if (!lib) {
                fprintf(stderr, "%s: allocator %s: %s is not installed, %s keeps its own malloc\n",
                        program_invocation_short_name, hp_allocator_names[a], allocator_soname(a), name);
                return NULL;
        }
        r = allocator_tune(a, arg_debug);
        if (r < 0) {
                fprintf(stderr, "%s: allocator %s: setenv: %s, not loaded\n", program_invocation_short_name,
                        hp_allocator_names[a], strerror(-r));
                free(lib);
                return NULL;
        }
        if (arg_debug)
                fprintf(stderr, "%s: allocator %s (%s): preloading %s after the shim\n",
                        program_invocation_short_name, hp_allocator_names[a], from, lib);
        return lib;
}

/*
 * One handshake with the daemon, closed at once. True if CMD will be managed;
 * otherwise says why (always for a refusal, with --debug for no daemon).
 */
static bool daemon_probe(const char *path)
{
        struct hp_conn c = HP_CONN_NULL;
        int r;

        r = hp_conn_open(&c, path);
        if (r == 0) {
                hp_conn_close(&c);
                return true;
        }
        /* on failure nothing is open, and c.error may say why */

        if (r == -ENOENT || r == -ECONNREFUSED) {
                if (arg_debug)
                        fprintf(stderr, "%s: no daemon at %s, running unmanaged\n",
                                program_invocation_short_name, path);
        } else if (c.error[0])
                fprintf(stderr, "%s: not managed: %s\n", program_invocation_short_name, c.error);
        else
                fprintf(stderr, "%s: not managed: %s: %s\n", program_invocation_short_name, path,
                        strerror(-r));
        return false;
}

int main(int argc, char *argv[])
{
        _cleanup_free_ char *shim = NULL, *allocator = NULL;
        const char *path;
        int cmd, r;

        cmd = parse_argv(argc, argv);

        if ((arg_socket && setenv(HP_ENV_SOCKET, arg_socket, 1) < 0) ||
            (arg_threshold && setenv(HP_ENV_THRESHOLD, arg_threshold, 1) < 0) ||
            (arg_min_size && setenv(HP_ENV_MIN_SIZE, arg_min_size, 1) < 0) ||
            (arg_backend && setenv(HP_ENV_BACKEND, arg_backend, 1) < 0) ||
            (arg_debug && setenv(HP_ENV_DEBUG, "1", 1) < 0)) {
                fprintf(stderr, "%s: setenv: %m\n", program_invocation_short_name);
                return EXIT_FAILURE;
        }

        path = hp_conn_socket_path(arg_socket);
        shim = preload_find();
        if (shim && daemon_probe(path)) {
                allocator = allocator_choose(argv[cmd]);
                r = preload_add(shim, allocator);
                if (r == -EINVAL)
                        fprintf(stderr, "%s: %s%s%s: a path with ':' or ' ' cannot go in LD_PRELOAD, running unmanaged\n",
                                program_invocation_short_name, shim, allocator ? " or " : "",
                                allocator ? allocator : "");
                else if (r < 0)
                        fprintf(stderr, "%s: cannot set LD_PRELOAD: %s, running unmanaged\n",
                                program_invocation_short_name, strerror(-r));
                else if (arg_debug)
                        fprintf(stderr, "%s: daemon at %s, preloading %s\n",
                                program_invocation_short_name, path, shim);
        }

        execvp(argv[cmd], argv + cmd);
        r = errno;
        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, argv[cmd], strerror(r));
        /* like the shells: 127 command not found, 126 found but not runnable */
        return r == ENOENT ? 127 : 126;
}
