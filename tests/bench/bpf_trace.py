#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon's in-kernel tracer (daemon/ops/bpf): after a workload under
hugepaged-run, the client's "gone" line carries a non-empty fault-latency
histogram (bpf_faults, p50, p99), MADV_COLLAPSE results and THP splits.

Skips (77) without root, or when the daemon says "fault tracing off" (built
without BPF, no BTF, or a kernel that refuses the programs)."""
import os
import re
import time
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import hptest  # noqa: E402


def test(ctx):
    d = ctx.daemon()
    for _ in range(100):
        text = d.log()
        if "fault tracing" in text:
            break
        time.sleep(0.05)
    off = re.search(r"fault tracing off: (.*)", text)
    if off:
        raise hptest.Skip("the daemon runs without tracing: " + off.group(1).strip())
    ctx.require("fault tracing on" in text, "the daemon reports fault tracing on")

    # 4 KiB served faults (never sequential, below the promotion threshold)
    r = hptest.run(ctx.managed(d.socket, ["--threads=2", "latency", "16M"]), timeout=120)
    ctx.require(r.rc == 0, "latency workload runs: " + r.describe())
    st = d.client_stats(int(r.kv["pid"]))
    ctx.require(st is not None, "the daemon logged the client's statistics")
    ctx.require("bpf_faults" in st, "the gone line has the in-kernel counters")
    ctx.expect(st["faults_served"] > 0, f"the daemon served faults ({st['faults_served']})")
    ctx.expect(st["bpf_faults"] > 0, f"the tracer saw faults sleep in handle_userfault ({st['bpf_faults']})")
    ctx.expect(st["bpf_fault_p50_ns"] > 0, f"fault latency p50 from the histogram ({st['bpf_fault_p50_ns']} ns)")
    ctx.expect(st["bpf_fault_p99_ns"] >= st["bpf_fault_p50_ns"], "p99 >= p50")

    # dense memory (promoted), then one page dropped per region: THP splits
    r = hptest.run(ctx.managed(d.socket, ["--wait=20", "split", "16M"]), timeout=120)
    ctx.require(r.rc == 0, "split workload runs: " + r.describe())
    st = d.client_stats(int(r.kv["pid"]))
    ctx.require(st is not None, "the daemon logged the client's statistics")
    if ctx.expect(st["promotions"] > 0, f"regions were promoted ({st['promotions']})"):
        ctx.expect(st["bpf_collapse_ok"] + st["bpf_collapse_mapped"] > 0,
                   f"the tracer saw MADV_COLLAPSE succeed (ok {st['bpf_collapse_ok']}, "
                   f"already huge {st['bpf_collapse_mapped']})")
    if int(r.kv.get("anon_huge_before", 0)) > 0:
        ctx.expect(st["bpf_thp_splits"] > 0, f"the tracer counted THP splits ({st['bpf_thp_splits']})")


if __name__ == "__main__":
    hptest.main(test)
