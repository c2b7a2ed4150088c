/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-config.c: hugepaged.conf parsing (daemon/ops/config.c) with fabricated
 * files: defaults, units, per-program sections, every error naming
 * file:line: key, unknown keys warned, overrides from the command line.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "allocator.h"
#include "config.h"

static char tmpdir[] = "/tmp/test-config.XXXXXX";
static char path[256];

struct reports {
        int errors, warnings, notices;
        char first_error[512];
        char all[8192];
};

static void collect(void *ud, int level, const char *msg)
{
        struct reports *r = ud;
        if (level <= LOG_ERR) {
                if (!r->errors++)
                        snprintf(r->first_error, sizeof(r->first_error), "%s", msg);
        } else if (level == LOG_WARNING)
                r->warnings++;
        else
                r->notices++;
        strncat(r->all, msg, sizeof(r->all) - strlen(r->all) - 2);
        strcat(r->all, "\n");
}

static int load(const char *text, struct config *c, struct reports *rep)
{
        FILE *f = fopen(path, "w");
        assert(f);
        fputs(text, f);
        fclose(f);
        memset(rep, 0, sizeof(*rep));
        assert(config_init(c) == 0);
        return config_load(c, path, collect, rep);
}

static void expect_error(const char *text, unsigned line, const char *key, const char *needle)
{
        struct config c;
        struct reports rep;
        char want[300];

        int r = load(text, &c, &rep);
        snprintf(want, sizeof(want), "%s:%u: %s: ", path, line, key);
        if (r != -EINVAL || rep.errors < 1 || strncmp(rep.first_error, want, strlen(want)) != 0 ||
            (needle && !strstr(rep.first_error, needle))) {
                fprintf(stderr, "FAIL: for\n%s\nwanted error '%s…%s', got r=%d: %s\n", text, want,
                        needle ? needle : "", r, rep.all);
                exit(1);
        }
        config_done(&c);
}

static void test_defaults(void)
{
        struct config c;
        assert(config_init(&c) == 0);
        assert(c.threshold == 64 && c.max_window == 64 && c.dense_predict && c.workers == 1 && c.fault_threads == 0);
        assert(strcmp(c.socket_path, "/run/hugepaged/hugepaged.sock") == 0);
        assert(c.allowed_groups[0] && strcmp(c.allowed_groups[0], "hugepaged") == 0 && !c.allowed_groups[1]);
        assert(!c.allowed_users[0]);
        assert(c.hugetlb_max.percent == 25 && c.hugetlb_max.bytes == 0);
        assert(c.huge_per_client.percent == 0 && c.huge_per_client.bytes == 0);
        config_done(&c);

        assert(config_init(&c) == 0);
        assert(config_load(&c, "/nonexistent/hugepaged.conf", NULL, NULL) == -ENOENT);
        config_done(&c);
}

static void test_full_file(void)
{
        struct config c;
        struct reports rep;
        int r = load("# comment\n"
                     "[Daemon]\n"
                     "Socket = /run/test/hp.sock\n"
                     "Workers = 4\n"
                     "FaultThreads = 3\n"
                     "LogLevel = debug\n"
                     "AllowedUsers = alice, bob 1001\n"
                     "AllowedGroups =\n"
                     "AdminGroups = wheel\n"
                     "\n"
                     "[Policy]\n"
                     "Threshold = 25%   ; a quarter of a region\n"
                     "MinSize = 4M\n"
                     "DensePrediction = off\n"
                     "FaultWindow = 256K\n"
                     "[Pool]\n"
                     "HugetlbMaxSize = 4G\n"
                     "[Budgets]\n"
                     "MaxClients = 100\n"
                     "MaxRangesPerClient = 1000\n"
                     "MaxHugePerClient = 1G\n"
                     "[Program:redis-server]\n"
                     "Threshold = 8\n"
                     "DensePrediction = no\n"
                     "[Program:postgres]\n"
                     "FaultWindow = 2M\n"
                     "Allocator = JeMalloc\n",
                     &c, &rep);
        if (r != 0) {
                fprintf(stderr, "FAIL: full file: %d\n%s", r, rep.all);
                exit(1);
        }
        assert(rep.errors == 0 && rep.warnings == 0);
        assert(rep.notices == 0);
        assert(strcmp(c.socket_path, "/run/test/hp.sock") == 0);
        assert(c.workers == 4 && c.fault_threads == 3 && c.log_level == LOG_DEBUG);
        assert(!strcmp(c.allowed_users[0], "alice") && !strcmp(c.allowed_users[1], "bob") &&
               !strcmp(c.allowed_users[2], "1001") && !c.allowed_users[3]);
        assert(!c.allowed_groups[0]);
        assert(!strcmp(c.admin_groups[0], "wheel"));
        assert(c.threshold == 128 && c.min_size == 4u << 20 && !c.dense_predict && c.max_window == 64);
        assert(c.hugetlb_max.bytes == 4ull << 30 && c.hugetlb_max.percent == 0);
        assert(c.max_clients == 100 && c.max_ranges == 1000 && c.huge_per_client.bytes == 1u << 30);
        assert(c.n_programs == 2);
        const struct config_program *p = config_find_program(&c, "redis-server");
        assert(p && p->threshold == 8 && p->dense_predict == 0 && p->max_window == 0 && p->allocator == -1);
        p = config_find_program(&c, "postgres");
        assert(p && p->threshold == 0 && p->dense_predict == -1 && p->max_window == 512 &&
               p->allocator == HP_ALLOCATOR_JEMALLOC);
        assert(!config_find_program(&c, "redis"));

        struct config copy;
        assert(config_copy(&copy, &c) == 0);
        assert(copy.n_programs == 2 && strcmp(copy.programs[1].name, "postgres") == 0);
        assert(copy.allowed_users[2] && copy.allowed_users[2] != c.allowed_users[2]);
        config_done(&c);
        config_done(&copy);
}

static void test_errors(void)
{
        expect_error("[Policy]\nThreshold = 513\n", 2, "Threshold", "outside 1..512");
        expect_error("[Policy]\nThreshold = 0\n", 2, "Threshold", NULL);
        expect_error("[Policy]\nThreshold = lots\n", 2, "Threshold", "not a number of pages");
        expect_error("[Policy]\nThreshold = 3K\n", 2, "Threshold", NULL);
        expect_error("[Policy]\nThreshold = 101%\n", 2, "Threshold", NULL);
        expect_error("\n\n[Policy]\nDensePrediction = maybe\n", 4, "DensePrediction", "not a boolean");
        expect_error("[Policy]\nMinSize = 5000\n", 2, "MinSize", "multiple of 4K");
        expect_error("[Policy]\nMinSize = 2X\n", 2, "MinSize", "not a size");
        expect_error("[Daemon]\nWorkers = 0\n", 2, "Workers", "outside 1..64");
        expect_error("[Daemon]\nFaultThreads = 257\n", 2, "FaultThreads", "outside 0..256");
        expect_error("[Daemon]\nFaultThreads = many\n", 2, "FaultThreads", "not a whole number");
        expect_error("[Daemon]\nWorkers = -1\n", 2, "Workers", "not a whole number");
        expect_error("[Daemon]\nNice = -21\n", 2, "Nice", "outside -20..19");
        expect_error("[Daemon]\nNice = high\n", 2, "Nice", "not a whole number");
        expect_error("[Daemon]\nSocket = relative.sock\n", 2, "Socket", "absolute");
        expect_error("[Daemon]\nLogLevel = chatty\n", 2, "LogLevel", NULL);
        expect_error("[Daemon]\nAllowedUsers = root,-x\n", 2, "AllowedUsers", "'-x'");
        expect_error("[Pool]\nHugetlbMaxSize = 3M\n", 2, "HugetlbMaxSize", "multiple of 2M");
        expect_error("[Pool]\nHugetlbMaxSize = 150%\n", 2, "HugetlbMaxSize", NULL);
        expect_error("[Budgets]\nMaxClients = 99999999999999999999\n", 2, "MaxClients", NULL);
        expect_error("[Program:]\nThreshold = 8\n", 2, "Threshold", "Program:NAME");
        expect_error("[Program:x]\nThreshold = 900\n", 2, "Threshold", NULL);
        expect_error("[Program:x]\nAllocator = hoard\n", 2, "Allocator", "not one of glibc, jemalloc");

        /* inih's own syntax errors still name the line */
        struct config c;
        struct reports rep;
        assert(load("[Policy]\nThreshold = 8\nthis line has no equals sign\n", &c, &rep) == -EINVAL);
        char want[300];
        snprintf(want, sizeof(want), "%s:3: syntax error", path);
        assert(strncmp(rep.first_error, want, strlen(want)) == 0);
        config_done(&c);

        /* several errors: all reported, the first first */
        assert(load("[Policy]\nThreshold = 0\nFaultWindow = 0\n", &c, &rep) == -EINVAL);
        assert(rep.errors == 2 && strstr(rep.first_error, ":2: Threshold: "));
        config_done(&c);
}

static void test_warnings(void)
{
        struct config c;
        struct reports rep;
        assert(load("[Policy]\nThresold = 8\nThreshold = 12\n[Nonsense]\na = 1\nb = 2\n", &c, &rep) == 0);
        assert(rep.errors == 0 && rep.warnings == 2);
        assert(strstr(rep.all, ":2: Thresold: unknown key in [Policy]"));
        assert(strstr(rep.all, ":5: unknown section [Nonsense]"));
        assert(c.threshold == 12);
        config_done(&c);

        /* keys and sections are case-insensitive, like systemd's */
        assert(load("[policy]\nthreshold = 2M\n", &c, &rep) == 0 && c.threshold == 512);
        config_done(&c);
}

static void test_overrides(void)
{
        struct config file, cli;
        assert(config_init(&file) == 0 && config_init(&cli) == 0);
        file.threshold = 100;
        file.workers = 8;
        cli.threshold = 7;
        cli.workers = 2;
        free(cli.socket_path);
        cli.socket_path = strdup("/tmp/x.sock");
        assert(config_apply_overrides(&file, &cli, CONFIG_SET_THRESHOLD | CONFIG_SET_SOCKET) == 0);
        assert(file.threshold == 7 && file.workers == 8 && strcmp(file.socket_path, "/tmp/x.sock") == 0);
        config_done(&file);
        config_done(&cli);
}

static void test_values(void)
{
        uint32_t p;
        uint64_t s;
        bool b;
        assert(config_parse_pages("64", &p) == 0 && p == 64);
        assert(config_parse_pages("4K", &p) == 0 && p == 1);
        assert(config_parse_pages("2M", &p) == 0 && p == 512);
        assert(config_parse_pages("12.5%", &p) == 0 && p == 64);
        assert(config_parse_pages("0.1%", &p) == 0 && p == 1);
        assert(config_parse_pages("100%", &p) == 0 && p == 512);
        assert(config_parse_pages("513", &p) == -ERANGE);
        assert(config_parse_pages("%", &p) == -EINVAL);
        assert(config_parse_size("1G", &s) == 0 && s == 1ull << 30);
        assert(config_parse_size("512KiB", &s) == 0 && s == 512ull << 10);
        assert(config_parse_size("7", &s) == 0 && s == 7);
        assert(config_parse_size("", &s) == -EINVAL);
        assert(config_parse_size("99999999999T", &s) == -ERANGE);
        assert(config_parse_bool("On", &b) == 0 && b);
        assert(config_parse_bool("FALSE", &b) == 0 && !b);
        assert(config_parse_bool("2", &b) == -EINVAL);
}

int main(void)
{
        if (!mkdtemp(tmpdir))
                return 1;
        snprintf(path, sizeof(path), "%s/hugepaged.conf", tmpdir);
        test_values();
        test_defaults();
        test_full_file();
        test_errors();
        test_warnings();
        test_overrides();
        unlink(path);
        rmdir(tmpdir);
        printf("test-config: ok\n");
        return 0;
}
