#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Least privilege: once set up, the daemon holds CAP_SYS_PTRACE,
CAP_SYS_NICE and CAP_KILL and nothing else, in every thread and every
capability set (the bounding set too), with no_new_privs; and with only
those it still does its whole job for an unprivileged client:
nobody:nogroup (allowed through --group nogroup) is served and its dense
regions are collapsed into huge pages by process_madvise(MADV_COLLAPSE);
uid 65533, outside the group, is refused and runs normally.
"""

import os

import hptest
import sectest

INSIDE = (65534, 65534)
OUTSIDE = (65533, 65533)


def caps(pid, task, key):
    return int(sectest.status_field(pid, key, task), 16)


def test(ctx):
    sectest.setpriv()
    run, workload, preload = sectest.copy_for_everyone(ctx, ctx.paths.run, ctx.paths.workload, ctx.paths.preload)
    os.environ["HUGEPAGED_PRELOAD"] = preload
    d = sectest.start_daemon(ctx, "--group", "nogroup", "--workers", "2")

    tasks = os.listdir(f"/proc/{d.pid}/task")
    for t in tasks:
        comm = open(f"/proc/{d.pid}/task/{t}/comm").read().strip()
        eff, prm, bnd = caps(d.pid, t, "CapEff"), caps(d.pid, t, "CapPrm"), caps(d.pid, t, "CapBnd")
        inh, amb = caps(d.pid, t, "CapInh"), caps(d.pid, t, "CapAmb")
        ctx.expect(eff == prm == bnd == sectest.KEPT_CAPS and inh == 0 and amb == 0,
                   f"thread {t} ({comm}): effective={eff:#x} permitted={prm:#x} bounding={bnd:#x} "
                   f"inheritable={inh:#x} ambient={amb:#x} (want {sectest.KEPT_CAPS:#x}: "
                   "cap_kill, cap_sys_ptrace, cap_sys_nice)")
        ctx.expect(sectest.status_field(d.pid, "NoNewPrivs", t) == "1", f"thread {t} ({comm}): no_new_privs")
    ctx.expect(len(tasks) >= 3, f"the workers were checked too ({len(tasks)} threads)")

    # nobody:nogroup: 128 of 512 pages per region (over the threshold of 64):
    # every region is filled and collapsed by the daemon.
    argv = sectest.as_user(*INSIDE, [run, "--socket", d.socket, "--", workload, "--wait", "30",
                                     "--per-region", "128", "sparse", "64M"])
    r = hptest.run(argv, timeout=300)
    ctx.expect(r.rc == 0 and r.int("mismatches") == 0 and r.int("zero_sample_mismatches") == 0,
               f"nobody:nogroup: exits 0 with its data intact{r.describe() if r.rc else ''}")
    stats = d.client_stats(r.int("pid")) or {}
    ctx.expect(stats.get("promotions", 0) >= 32 and stats.get("promotions_failed", 1) == 0,
               f"nobody:nogroup: its 32 regions collapsed by the capability-reduced daemon "
               f"(promotions={stats.get('promotions')}, promotions_failed={stats.get('promotions_failed')})")

    argv = sectest.as_user(*OUTSIDE, [run, "--socket", d.socket, "--", workload, "--wait", "0",
                                      "dense-seq", "64M"])
    r = hptest.run(argv, timeout=300)
    ctx.expect(r.rc == 0 and r.int("mismatches") == 0, f"uid 65533: runs correctly{r.describe() if r.rc else ''}")
    ctx.expect("not managed" in r.err and ("not root" in r.err or "not allowed" in r.err),
               f"uid 65533: refused, and told why ({r.err.strip()})")

    errors = sectest.daemon_errors(d)
    ctx.expect(not errors, f"the daemon logged no errors ({errors[:3]})")


if __name__ == "__main__":
    hptest.main(test)
