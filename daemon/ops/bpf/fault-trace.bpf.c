// SPDX-License-Identifier: (LGPL-2.1-or-later OR BSD-2-Clause)
/*
 * fault-trace.bpf.c: in-kernel tracing of the processes hugepaged manages
 * (tgids in `procs`, kept by ../trace.c):
 *
 * - fault latency as the program sees it: from the page-fault exception
 *   entry to the return to user space, for faults that slept in
 *   handle_userfault. Built from tracepoints only (no kprobes or fentry:
 *   many kernels, this project's CI included, allow neither):
 *     exceptions:page_fault_{user,kernel}  fault entry: note the time;
 *     sched:sched_switch (out)             sleeping in handle_userfault
 *                                          (checked on the kernel stack when
 *                                          the loader found the function in
 *                                          kallsyms): the fault is served by
 *                                          userfaultfd;
 *     sched:sched_switch (in)              woken: note the time;
 *     rseq:rseq_update                     back to user space (a task that was
 *                                          scheduled out passes here when it
 *                                          has rseq registered, as glibc does);
 *                                          without rseq the wake-up ends it.
 * - MADV_COLLAPSE results (huge_memory:mm_khugepaged_scan_pmd in a user
 *   context, i.e. madvise/process_madvise) and khugepaged's collapses;
 * - THP splits: a PMD mapping of an anonymous THP going away while its
 *   pages stay mapped (memcg:mod_memcg_lruvec_state: NR_ANON_THPS drops
 *   without NR_ANON_MAPPED dropping just before, as in a full unmap).
 *
 * Must never: block, or cost more than a hash lookup for tasks that are
 * not managed.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "fault-trace.h"

/* GPL-compatible (the kernel allows the stack and task helpers to such
 * programs only); this file is LGPL or BSD, as libbpf itself. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TASK_INTERRUPTIBLE 0x1
#define PF_EXITING 0x4
#define PF_KTHREAD 0x200000
#define STACK_DEPTH 12
#define UNMAP_PAIR_NS 20000     /* NR_ANON_MAPPED then NR_ANON_THPS of one folio */
#define BLOCK_AFTER_ENTRY_NS 10000000ull /* heuristic mode: sleep this soon after entry */

/* handle_userfault's text, from the loader (0: not found, use the heuristic). */
const volatile __u64 huf_start = 0;
const volatile __u64 huf_end = 0;

struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(max_entries, TRACE_MAX_PROCS);
        __uint(map_flags, BPF_F_NO_PREALLOC);
        __type(key, __u32);                     /* tgid */
        __type(value, struct trace_proc);
} procs SEC(".maps");

struct fault_state {
        __u64 start;            /* fault entry */
        __u64 resumed;          /* woken after sleeping in handle_userfault, 0 before */
        __u32 tgid;
        __u32 blocked;
};

struct {
        __uint(type, BPF_MAP_TYPE_LRU_HASH);
        __uint(max_entries, 65536);
        __type(key, __u32);                     /* tid */
        __type(value, struct fault_state);
} faults SEC(".maps");

struct unmap_mark {
        __u64 pid_tgid;
        __u64 when;
};

struct {
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
        __uint(max_entries, 1);
        __type(key, __u32);
        __type(value, struct unmap_mark);
} unmaps SEC(".maps");

static __always_inline __u32 hist_bucket(__u64 v)
{
        __u32 msb = 0;

        if (v >> 32) { v >>= 32; msb += 32; }
        if (v >> 16) { v >>= 16; msb += 16; }
        if (v >> 8) { v >>= 8; msb += 8; }
        if (v >> 4) { v >>= 4; msb += 4; }
        if (v >> 2) { v >>= 2; msb += 2; }
        if (v >> 1) { msb += 1; }
        return msb;
}

/* stats.h's bucket of ns, shifted to this histogram's range. */
static __always_inline __u32 bucket_of(__u64 ns)
{
        if (ns < (1ull << 9))
                return 0;
        __u32 msb = hist_bucket(ns);
        __u32 sub = (__u32)(ns >> (msb - TRACE_HIST_SUB_BITS)) & ((1u << TRACE_HIST_SUB_BITS) - 1);
        __u32 b = (msb - 2) * (1u << TRACE_HIST_SUB_BITS) + sub;

        b -= TRACE_HIST_FIRST;
        return b < TRACE_HIST_BUCKETS ? b : TRACE_HIST_BUCKETS - 1;
}

static __always_inline void fault_done(struct fault_state *st, __u64 end)
{
        struct trace_proc *p = bpf_map_lookup_elem(&procs, &st->tgid);

        if (!p || end <= st->start)
                return;
        __u64 ns = end - st->start;
        __u32 b = bucket_of(ns);
        __sync_fetch_and_add(&p->faults, 1);
        __sync_fetch_and_add(&p->fault_ns, ns);
        if (b < TRACE_HIST_BUCKETS)
                __sync_fetch_and_add(&p->hist[b], 1);
}

static __always_inline int on_fault_entry(void)
{
        __u64 id = bpf_get_current_pid_tgid();
        __u32 tgid = id >> 32, tid = (__u32)id;

        if (!bpf_map_lookup_elem(&procs, &tgid))
                return 0;
        struct fault_state *old = bpf_map_lookup_elem(&faults, &tid);
        if (old && old->blocked && old->resumed)
                fault_done(old, old->resumed);  /* no rseq_update came: the wake-up ended it */
        struct fault_state st = { .start = bpf_ktime_get_ns(), .tgid = tgid };
        bpf_map_update_elem(&faults, &tid, &st, BPF_ANY);
        return 0;
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
        return on_fault_entry();
}

SEC("tp_btf/page_fault_kernel")
int BPF_PROG(page_fault_kernel, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
        return on_fault_entry();
}

/* Is the current task (going to sleep) inside handle_userfault? */
static __always_inline bool in_handle_userfault(void *ctx, struct fault_state *st)
{
        if (!huf_start)
                return bpf_ktime_get_ns() - st->start < BLOCK_AFTER_ENTRY_NS;
        __u64 ips[STACK_DEPTH] = {};
        long n = bpf_get_stack(ctx, ips, sizeof(ips), 0);
        if (n <= 0)
                return false;
        for (int i = 0; i < STACK_DEPTH; i++)
                if (ips[i] >= huf_start && ips[i] < huf_end)
                        return true;
        return false;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state)
{
        __u32 tid = BPF_CORE_READ(prev, pid);
        struct fault_state *st = bpf_map_lookup_elem(&faults, &tid);

        if (st && !preempt && (prev_state & TASK_INTERRUPTIBLE) && in_handle_userfault(ctx, st)) {
                st->blocked = 1;
                st->resumed = 0;        /* (again, when the retried fault sleeps again) */
        }
        tid = BPF_CORE_READ(next, pid);
        st = bpf_map_lookup_elem(&faults, &tid);
        if (st && st->blocked && !st->resumed) {
                st->resumed = bpf_ktime_get_ns();
                if (!BPF_CORE_READ(next, rseq)) {
                        /* no rseq_update will mark the return to user space */
                        fault_done(st, st->resumed);
                        bpf_map_delete_elem(&faults, &tid);
                }
        }
        return 0;
}

SEC("tp_btf/rseq_update")
int BPF_PROG(rseq_update, struct task_struct *t)
{
        __u32 tid = (__u32)bpf_get_current_pid_tgid();
        struct fault_state *st = bpf_map_lookup_elem(&faults, &tid);

        if (!st)
                return 0;
        /* on the way to user space: whatever fault it was in is over */
        if (st->blocked)
                fault_done(st, bpf_ktime_get_ns());
        bpf_map_delete_elem(&faults, &tid);
        return 0;
}

SEC("tp_btf/mm_khugepaged_scan_pmd")
int BPF_PROG(scan_pmd, struct mm_struct *mm, struct folio *folio, int referenced, int none_or_zero,
             int status, int unmapped)
{
        if (!bpf_core_field_exists(mm->owner))
                return 0;       /* no way to tell whose memory it was */
        __u32 tgid = BPF_CORE_READ(mm, owner, tgid);
        struct trace_proc *p = bpf_map_lookup_elem(&procs, &tgid);
        if (!p)
                return 0;
        struct task_struct *cur = (struct task_struct *)bpf_get_current_task_btf();
        bool ok = status == bpf_core_enum_value(enum scan_result, SCAN_SUCCEED);

        if (cur->flags & PF_KTHREAD) {
                if (ok)
                        __sync_fetch_and_add(&p->khugepaged_ok, 1);
        } else if (ok) {
                __sync_fetch_and_add(&p->collapse_ok, 1);
        } else if (status == bpf_core_enum_value(enum scan_result, SCAN_PMD_MAPPED)) {
                __sync_fetch_and_add(&p->collapse_mapped, 1);
        } else if ((bpf_core_enum_value_exists(enum scan_result, SCAN_PMD_NULL) &&
                    status == bpf_core_enum_value(enum scan_result, SCAN_PMD_NULL)) ||
                   (bpf_core_enum_value_exists(enum scan_result, SCAN_PMD_NONE) &&
                    status == bpf_core_enum_value(enum scan_result, SCAN_PMD_NONE))) {
                /* nothing mapped there yet: the daemon asking whether a
                 * woken thread took its native THP fault; not a failure */
        } else {
                __sync_fetch_and_add(&p->collapse_failed, 1);
        }
        return 0;
}

SEC("tp_btf/mod_memcg_lruvec_state")
int BPF_PROG(lruvec_state, struct mem_cgroup *memcg, int item, int val)
{
        if (val >= 0)
                return 0;
        __u64 id = bpf_get_current_pid_tgid();
        __u32 tgid = id >> 32, zero = 0;
        struct unmap_mark *m = bpf_map_lookup_elem(&unmaps, &zero);
        if (!m)
                return 0;
        if (item == bpf_core_enum_value(enum node_stat_item, NR_ANON_MAPPED)) {
                m->pid_tgid = id;
                m->when = bpf_ktime_get_ns();
                return 0;
        }
        if (item != bpf_core_enum_value(enum node_stat_item, NR_ANON_THPS))
                return 0;
        struct trace_proc *p = bpf_map_lookup_elem(&procs, &tgid);
        if (!p)
                return 0;
        struct task_struct *cur = (struct task_struct *)bpf_get_current_task_btf();
        if (cur->flags & PF_EXITING)
                return 0;
        /* A whole THP unmapped drops its mapped pages first (rmap's
         * __folio_mod_stat order); a split keeps them mapped by PTEs. */
        if (m->pid_tgid == id && bpf_ktime_get_ns() - m->when < UNMAP_PAIR_NS)
                return 0;
        __sync_fetch_and_add(&p->thp_splits, 1);
        return 0;
}
