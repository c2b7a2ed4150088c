/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-config.c: libFuzzer harness for hugepaged.conf parsing
 * (daemon/ops/config.c on inih): the input is a whole file, parsed the way the
 * daemon parses it (from a path, into a config with the defaults), then
 * copied, overridden and freed as a reload does; every report must name
 * the file and a line. The value parsers the command line shares get the
 * first line of the input as well. The sanitizers catch the rest (leaks
 * included).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define require(x) do { if (!(x)) __builtin_trap(); } while (0)

static char path[64];

static void on_report(void *userdata, int level, const char *msg)
{
        /* "PATH:LINE: ..." */
        size_t n = strlen(path);
        require(msg && strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] >= '0' && msg[n + 1] <= '9');
        (*(unsigned *)userdata)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static int fd = -1;
        struct config c, copy, over;
        unsigned reports = 0;

        if (size > 1 << 16)
                return 0;
        if (fd < 0) {
                fd = memfd_create("hugepaged.conf", MFD_CLOEXEC);
                require(fd >= 0);
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        }
        require(ftruncate(fd, 0) == 0);
        require(pwrite(fd, data, size, 0) == (ssize_t)size);

        require(config_init(&c) == 0);
        int r = config_load(&c, path, on_report, &reports);
        require(r == 0 || r == -EINVAL);
        require(r == 0 || reports > 0);
        require(config_copy(&copy, &c) == 0);
        require(config_init(&over) == 0);
        require(config_apply_overrides(&over, &copy, ~0u) == 0);
        for (size_t i = 0; i < c.n_programs; i++)
                require(config_find_program(&over, c.programs[i].name) == NULL &&
                        config_find_program(&c, c.programs[i].name) == &c.programs[i]);
        require(c.threshold >= 1 && c.threshold <= 512 && c.max_window >= 1 && c.max_window <= 512);
        config_done(&over);
        config_done(&copy);
        config_done(&c);

        /* the value parsers, on the first line */
        char line[256];
        size_t n = 0;
        while (n < size && n < sizeof(line) - 1 && data[n] != '\n')
                n++;
        memcpy(line, data, n);
        line[n] = '\0';
        uint64_t v;
        uint32_t pages;
        bool b;
        (void)config_parse_size(line, &v);
        (void)config_parse_bool(line, &b);
        if (config_parse_pages(line, &pages) == 0)
                require(pages >= 1 && pages <= 512);
        return 0;
}
