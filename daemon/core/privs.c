/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * privs.c: least privilege. hugepaged starts as root because it opens
 * /dev/userfaultfd (root 0600), binds its socket and may load eBPF tracing;
 * once that is done it keeps only the capabilities in `kept` below, each
 * for a use it cannot do without (found by dropping it and running the
 * integration tests with unprivileged clients). The list is documented in
 * hugepaged(8) and mirrored by CapabilityBoundingSet= in hugepaged.service.
 *
 * Not needed after start-up, so dropped: CAP_DAC_OVERRIDE and
 * CAP_DAC_READ_SEARCH (/proc/PID/stat, status and comm are world-readable;
 * maps and exe are guarded by the ptrace check, which CAP_SYS_PTRACE
 * passes; the daemon's own files are root's, and it runs as uid 0),
 * CAP_SYS_ADMIN (the shmem backend's tmpfs is mounted and detached before,
 * backend.h's prepare), CAP_BPF and CAP_PERFMON (the tracer is loaded
 * before, with only those two effective, see privs_tracing_begin(); its maps
 * are used through their fds), CAP_SYS_RESOURCE (RLIMIT_NOFILE is
 * raised before), CAP_NET_*, CAP_SETUID/SETGID/SETPCAP and the rest.
 * Growing and shrinking the hugetlb pool (hugetlb.c) needs none: the
 * nr_hugepages file is owned by root, mode 0644, and memfd_create(MFD_HUGETLB)
 * and fallocate() on it are unprivileged.
 *
 * Capabilities are per thread: this runs before the first thread starts.
 * Never called again; nothing here can be undone.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "privs.h"
#include "util.h"

static const struct {
        int cap;
        const char *name;
} kept[] = {
        /* open clients' /proc/PID/maps (PROCMAP_QUERY) and /proc/PID/exe, read
         * their start_stack, and pass the ptrace-read check of
         * process_madvise(), for clients of any user */
        { CAP_SYS_PTRACE, "cap_sys_ptrace" },
        /* process_madvise(MADV_COLLAPSE) on another process */
        { CAP_SYS_NICE, "cap_sys_nice" },
        /* pidfd_send_signal(pidfd, 0): is a client of another user still
         * the process it identified as (pid reuse) */
        { CAP_KILL, "cap_kill" },
};

static unsigned last_cap(void)
{
        char buf[16] = "";
        FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
        unsigned v = 40;        /* CAP_CHECKPOINT_RESTORE, as of 6.x */
        if (f) {
                if (fgets(buf, sizeof(buf), f))
                        sscanf(buf, "%u", &v);
                fclose(f);
        }
        return v < 63 ? v : 63;
}

int privs_drop(void)
{
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[2] = {};
        uint64_t have, keep = 0;
        char names[160] = "";

        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return log_error_errno(errno, "PR_SET_NO_NEW_PRIVS: %m");
        if (syscall(SYS_capget, &hdr, data) < 0)
                return log_error_errno(errno, "capget: %m");
        have = (uint64_t)data[1].permitted << 32 | data[0].permitted;
        for (size_t i = 0; i < ARRAY_SIZE(kept); i++) {
                uint64_t bit = 1ull << kept[i].cap;
                if (!(have & bit)) {
                        log_warning("started without %s: %s", kept[i].name,
                                    kept[i].cap == CAP_SYS_NICE ? "promotions will fail" :
                                    kept[i].cap == CAP_KILL ? "clients of other users will be refused" :
                                    "clients of other users cannot be served");
                        continue;
                }
                keep |= bit;
                snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", names[0] ? " " : "",
                         kept[i].name);
        }

        /* The bounding set first: dropping from it needs CAP_SETPCAP, which
         * goes with the rest below. */
        bool setpcap = (uint64_t)data[0].effective & (1ull << CAP_SETPCAP);
        for (unsigned c = 0; setpcap && c <= last_cap(); c++) {
                if (keep & (1ull << c))
                        continue;
                if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
                        return log_error_errno(errno, "dropping capability %u from the bounding set: %m", c);
        }
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return log_error_errno(errno, "clearing the ambient capabilities: %m");

        memset(data, 0, sizeof(data));
        data[0].effective = data[0].permitted = (uint32_t)keep;
        data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
        if (syscall(SYS_capset, &hdr, data) < 0)
                return log_error_errno(errno, "capset: %m");

        /* No core dumps and no ptrace by other root processes that lack
         * CAP_SYS_PTRACE: this process holds /dev/userfaultfd. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return log_error_errno(errno, "PR_SET_DUMPABLE: %m");

        log_info("capabilities: kept %s; every other one dropped%s; no_new_privs set",
                 names[0] ? names : "none", setpcap ? " (bounding set too)" : "");
        return 0;
}

/* The effective set (and the permitted one) of this thread. */
static int caps_get(struct __user_cap_data_struct data[2])
{
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
        return syscall(SYS_capget, &hdr, data) < 0 ? -errno : 0;
}

static int effective_set(struct __user_cap_data_struct data[2], uint64_t effective)
{
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
        data[0].effective = (uint32_t)effective;
        data[1].effective = (uint32_t)(effective >> 32);
        return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

int privs_tracing_begin(uint64_t *ret_saved_effective)
{
        struct __user_cap_data_struct data[2] = {};
        int r = caps_get(data);
        if (r < 0)
                return log_error_errno(r, "capget: %m");
        uint64_t effective = (uint64_t)data[1].effective << 32 | data[0].effective;
        uint64_t permitted = (uint64_t)data[1].permitted << 32 | data[0].permitted;
        /* CAP_BPF and CAP_PERFMON load tracing programs; CAP_SYSLOG shows the
         * addresses in /proc/kallsyms (kallsyms_show_value()) that locate
         * handle_userfault. A subset of the permitted set: always allowed. */
        r = effective_set(data, permitted & (1ull << CAP_BPF | 1ull << CAP_PERFMON | 1ull << CAP_SYSLOG));
        if (r < 0)
                return log_error_errno(r, "capset (only what loading the tracer needs): %m");
        *ret_saved_effective = effective;
        return 0;
}

int privs_tracing_end(uint64_t saved_effective)
{
        struct __user_cap_data_struct data[2] = {};
        int r = caps_get(data);
        if (r >= 0)
                r = effective_set(data, saved_effective);
        if (r < 0)
                return log_error_errno(r, "capset (after loading the tracer): %m");
        return 0;
}
