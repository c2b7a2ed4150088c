/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * trace.c: loads bpf/fault-trace.bpf.c (a libbpf CO-RE skeleton), keeps its
 * set of managed processes and reads their statistics (trace.h).
 *
 * Owns the BPF objects and the totals of processes no longer traced. Must
 * never make the daemon depend on BPF: any failure to load is one log line
 * and -EOPNOTSUPP, and every call then is a cheap no-op. Built without the
 * skeleton (meson -Dbpf=disabled, or no clang/bpftool/libbpf) it is only that.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpf/trace-config.h"
#include "log.h"
#include "trace.h"

#if HAVE_BPF

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/fault-trace.h"
#include "bpf/fault-trace.skel.h"

/* Connections per traced process: a process may hold several (the
 * hugepaged-run probe and then the shim, or libhugepaged and the shim). */
struct pid_ref {
        pid_t pid;
        unsigned refs;
};

struct trace {
        struct fault_trace *skel;
        int procs_fd;
        struct trace_proc gone; /* sums of removed processes */
        struct pid_ref *refs;
        size_t nrefs, caprefs;
};

static struct pid_ref *ref_find(struct trace *t, pid_t pid)
{
        for (size_t i = 0; i < t->nrefs; i++)
                if (t->refs[i].pid == pid)
                        return &t->refs[i];
        return NULL;
}

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
        char buf[512];

        if (level == LIBBPF_DEBUG)
                return 0;
        vsnprintf(buf, sizeof(buf), fmt, ap);
        buf[strcspn(buf, "\n")] = '\0';
        log_debug("libbpf: %s", buf);
        return 0;
}

/*
 * handle_userfault's text from /proc/kallsyms (the next symbol's address
 * ends it), for the stack check that tells a fault served by userfaultfd
 * from any other sleep. 0 when hidden (kptr_restrict): the tracer then
 * counts an interruptible sleep shortly after a fault entry instead.
 */
static void find_handle_userfault(uint64_t *start, uint64_t *end)
{
        FILE *f = fopen("/proc/kallsyms", "re");
        char line[256], name[128], type;
        unsigned long long a;

        *start = *end = 0;
        if (!f)
                return;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "%llx %c %127s", &a, &type, name) == 3 && !strcmp(name, "handle_userfault")) {
                        *start = a;
                        break;
                }
        if (*start) {
                rewind(f);
                *end = *start + 16384;  /* bound if no symbol follows */
                while (fgets(line, sizeof(line), f))
                        if (sscanf(line, "%llx %c %127s", &a, &type, name) == 3 && a > *start && a < *end)
                                *end = a;
        }
        fclose(f);
}

int trace_start(struct trace **ret)
{
        struct trace *t;
        const char *why = NULL;
        uint64_t hs, he;
        int r;

        *ret = NULL;
        if (access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
                log_notice("fault tracing off: the kernel has no BTF (/sys/kernel/btf/vmlinux)");
                return -EOPNOTSUPP;
        }
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        libbpf_set_print(libbpf_log);
        t->skel = fault_trace__open();
        if (!t->skel) {
                r = -errno;
                why = "cannot open the BPF object";
                goto fail;
        }
        find_handle_userfault(&hs, &he);
        t->skel->rodata->huf_start = hs;
        t->skel->rodata->huf_end = he;
        r = fault_trace__load(t->skel);
        if (r < 0) {
                why = r == -EPERM ? "the kernel refused the programs (needs CAP_BPF and CAP_PERFMON)"
                                  : "the kernel refused the programs";
                goto fail;
        }
        r = fault_trace__attach(t->skel);
        if (r < 0) {
                why = "cannot attach to the tracepoints";
                goto fail;
        }
        t->procs_fd = bpf_map__fd(t->skel->maps.procs);
        log_info("fault tracing on (in-kernel fault latency%s, collapse results, THP splits)",
                 hs ? "" : "; handle_userfault not in kallsyms: sleeps right after a fault count as served");
        *ret = t;
        return 0;
fail:
        log_notice("fault tracing off: %s: %s", why, strerror(r < 0 ? -r : EINVAL));
        fault_trace__destroy(t->skel);
        free(t);
        return -EOPNOTSUPP;
}

struct trace *trace_stop(struct trace *t)
{
        if (t) {
                fault_trace__destroy(t->skel);
                free(t->refs);
                free(t);
        }
        return NULL;
}

int trace_add_pid(struct trace *t, pid_t pid)
{
        struct trace_proc zero = { 0 };
        uint32_t key = (uint32_t)pid;

        if (!t)
                return -EOPNOTSUPP;
        struct pid_ref *ref = ref_find(t, pid);
        if (ref) {
                ref->refs++;
                return 0;
        }
        if (t->nrefs == t->caprefs) {
                size_t cap = t->caprefs ? t->caprefs * 2 : 64;
                struct pid_ref *v = realloc(t->refs, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                t->refs = v;
                t->caprefs = cap;
        }
        if (bpf_map_update_elem(t->procs_fd, &key, &zero, BPF_NOEXIST) < 0 && errno != EEXIST)
                return log_debug_errno(errno, "fault tracing: cannot add pid %d: %m", (int)pid);
        t->refs[t->nrefs++] = (struct pid_ref){ .pid = pid, .refs = 1 };
        return 0;
}

static void proc_add(struct trace_proc *sum, const struct trace_proc *p)
{
        sum->faults += p->faults;
        sum->fault_ns += p->fault_ns;
        sum->collapse_ok += p->collapse_ok;
        sum->collapse_mapped += p->collapse_mapped;
        sum->collapse_failed += p->collapse_failed;
        sum->khugepaged_ok += p->khugepaged_ok;
        sum->thp_splits += p->thp_splits;
        for (unsigned i = 0; i < TRACE_HIST_BUCKETS; i++)
                sum->hist[i] += p->hist[i];
}

int trace_remove_pid(struct trace *t, pid_t pid)
{
        struct trace_proc p;
        uint32_t key = (uint32_t)pid;

        if (!t)
                return -EOPNOTSUPP;
        struct pid_ref *ref = ref_find(t, pid);
        if (!ref)
                return -ENOENT;
        if (--ref->refs > 0)
                return 0;
        *ref = t->refs[--t->nrefs];
        if (bpf_map_lookup_elem(t->procs_fd, &key, &p) == 0)
                proc_add(&t->gone, &p);
        if (bpf_map_delete_elem(t->procs_fd, &key) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

static void stats_from(const struct trace_proc *p, struct trace_stats *s)
{
        memset(s, 0, sizeof(*s));
        s->faults = p->faults;
        s->collapse_ok = p->collapse_ok;
        s->collapse_mapped = p->collapse_mapped;
        s->collapse_failed = p->collapse_failed;
        s->khugepaged_ok = p->khugepaged_ok;
        s->thp_splits = p->thp_splits;
        for (unsigned i = 0; i < TRACE_HIST_BUCKETS && TRACE_HIST_FIRST + i < HIST_BUCKETS; i++) {
                s->fault_latency_ns.bucket[TRACE_HIST_FIRST + i] = p->hist[i];
                s->fault_latency_ns.count += p->hist[i];
        }
        s->fault_p50_ns = histogram_quantile(&s->fault_latency_ns, 0.50);
        s->fault_p99_ns = histogram_quantile(&s->fault_latency_ns, 0.99);
}

int trace_read(struct trace *t, pid_t pid, struct trace_stats *ret)
{
        struct trace_proc p;
        uint32_t key = (uint32_t)pid, next;

        if (!t)
                return -EOPNOTSUPP;
        if (pid) {
                if (bpf_map_lookup_elem(t->procs_fd, &key, &p) < 0)
                        return -errno;
                stats_from(&p, ret);
                return 0;
        }
        struct trace_proc sum = t->gone;
        for (int e = bpf_map_get_next_key(t->procs_fd, NULL, &next); e == 0;
             e = bpf_map_get_next_key(t->procs_fd, &key, &next)) {
                key = next;
                if (bpf_map_lookup_elem(t->procs_fd, &key, &p) == 0)
                        proc_add(&sum, &p);
        }
        stats_from(&sum, ret);
        return 0;
}

#else /* !HAVE_BPF */

int trace_start(struct trace **ret)
{
        *ret = NULL;
        log_notice("fault tracing off: built without BPF support (meson -Dbpf; needs clang, bpftool, libbpf)");
        return -EOPNOTSUPP;
}

struct trace *trace_stop(struct trace *t)
{
        return NULL;
}

int trace_add_pid(struct trace *t, pid_t pid)
{
        return -EOPNOTSUPP;
}

int trace_remove_pid(struct trace *t, pid_t pid)
{
        return -EOPNOTSUPP;
}

int trace_read(struct trace *t, pid_t pid, struct trace_stats *ret)
{
        return -EOPNOTSUPP;
}

#endif
