/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hp-unit-sandbox: run a command confined the way systemd confines a unit,
 * for tests on machines whose PID 1 is not systemd (tests/dbus/unit_sandbox.py
 * reads hugepaged.service and passes its settings here):
 *
 *   hp-unit-sandbox --caps N,N,...     CapabilityBoundingSet= (numbers)
 *                   --errno N          SystemCallErrorNumber=
 *                   --allow NAME,...   the expanded SystemCallFilter= allow list
 *                   --unix-only        RestrictAddressFamilies=AF_UNIX
 *                   -- CMD ARGS...
 *
 * In systemd's order: bounding set, no_new_privs (NoNewPrivileges=), then
 * the seccomp filter (native architecture only, SystemCallArchitectures=
 * native; a call not allowed fails with errno), then execve. Runs as root.
 * Test helper: never installed.
 */
#include <errno.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what, int err)
{
        fprintf(stderr, "hp-unit-sandbox: %s: %s\n", what, strerror(err));
        return 127;
}

int main(int argc, char **argv)
{
        uint64_t caps = 0;
        const char *allow = NULL;
        int err = EPERM, i, r;
        bool unix_only = false, have_caps = false;

        for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
                if (strcmp(argv[i], "--caps") == 0 && i + 1 < argc) {
                        char *list = argv[++i];
                        have_caps = true;
                        for (char *t = strtok(list, ","); t; t = strtok(NULL, ","))
                                caps |= 1ull << (strtoul(t, NULL, 10) & 63);
                } else if (strcmp(argv[i], "--errno") == 0 && i + 1 < argc)
                        err = atoi(argv[++i]);
                else if (strcmp(argv[i], "--allow") == 0 && i + 1 < argc)
                        allow = argv[++i];
                else if (strcmp(argv[i], "--unix-only") == 0)
                        unix_only = true;
                else {
                        fprintf(stderr, "hp-unit-sandbox: unknown argument %s\n", argv[i]);
                        return 2;
                }
        }
        if (i + 1 >= argc) {
                fprintf(stderr, "usage: hp-unit-sandbox [--caps N,..] [--errno N] [--allow NAME,..] [--unix-only] -- CMD ARGS...\n");
                return 2;
        }
        char **cmd = argv + i + 1;

        if (have_caps)
                for (unsigned c = 0; c < 64; c++)
                        if (!(caps & (1ull << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
                                return fail("PR_CAPBSET_DROP", errno);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return fail("PR_SET_NO_NEW_PRIVS", errno);

        scmp_filter_ctx ctx = seccomp_init(allow ? SCMP_ACT_ERRNO((uint32_t)err) : SCMP_ACT_ALLOW);
        if (!ctx)
                return fail("seccomp_init", ENOMEM);
        if (allow) {
                char *list = strdup(allow);
                for (char *t = strtok(list, ","); t; t = strtok(NULL, ",")) {
                        int nr = seccomp_syscall_resolve_name(t);
                        if (nr == __NR_SCMP_ERROR)
                                continue;       /* not on this architecture: systemd skips it too */
                        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
                        if (r < 0 && r != -EEXIST)
                                return fail(t, -r);
                }
                free(list);
        }
        if (unix_only) {
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                                     SCMP_A0(SCMP_CMP_NE, AF_UNIX));
                if (r < 0)
                        return fail("socket rule", -r);
        }
        r = seccomp_load(ctx);
        if (r < 0)
                return fail("seccomp_load", -r);
        seccomp_release(ctx);
        execvp(cmd[0], cmd);
        return fail(cmd[0], errno);
}
