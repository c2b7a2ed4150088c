#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench/run.sh end to end with tiny sizes (--smoke): the JSON it writes has
every case with every baseline, and the hugepaged runs show served faults
and promotions; S14 has its rows, its released shared memory kept its data,
PostgreSQL's shared memory got PMD-mapped under hugepaged and the hugetlb
pool went back to 0 (or the part says why it was skipped: no PostgreSQL 15).
Not a benchmark: the numbers themselves are not checked.
Skips (77) without root or /dev/userfaultfd."""
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77
CASES = ["S1", "S1r", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10"]
# the runs each case must have (keys of cases[C]["runs"])
MODES = {
    "S1": ["never", "always", "hugepaged"],
    "S1r": ["never", "always", "hugepaged"],
    "S2": ["never", "always", "hugepaged"],
    "S3": ["never", "always", "hugepaged"],
    "S4": ["never", "always", "hugepaged"],
    "S5": ["khugepaged"],
    "S6": ["never", "always", "hugepaged"],
    "S8": ["plain", "hugepaged"],
    "S10": ["never", "always", "hugepaged"],
}
S7_MODES = ["never", "floor-block", "floor-busy", "hugepaged"]
PROMOTING = ["S2", "S3", "S4", "S9"]     # cases whose memory is dense enough to promote
# S12, real programs: the rows each must have (metric prefix -> row suffixes)
S12 = {
    "python": ("python3 bytearray", [": fill", ": sha256 of it", ": RSS", ": AnonHugePages"]),
    "redis": ("redis-server", [": load (DEBUG POPULATE)", ": SET -P 16", ": GET -P 16", ": RSS", ": AnonHugePages"]),
    "sort": ("sort -S", [": sort", ": sort throughput", ": RSS", ": AnonHugePages"]),
}
# S14, shared memory: its rows, and the parts run apart (cases["S14 <part>"]:
# the runs each must have; a part whose program is missing says "skipped")
S14_ROWS = ["shmem 4 KiB fault p50", "in-place collapse vs anon collapse p50", "memory after release",
            "postgres: pgbench -S TPS (huge_pages=off)", "postgres: ShmemPmdMapped of the postmaster",
            "postgres: pgbench -S TPS (huge_pages=on, empty pool)"]
S14_PARTS = {"release": ["hugepaged"], "postgres": ["plain", "hugepaged", "hugepaged huge_pages=on"]}


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root (the runner starts hugepaged, makes a cgroup, reserves huge pages)")
        return SKIP
    if not os.path.exists("/dev/userfaultfd"):
        print("SKIP: /dev/userfaultfd is missing")
        return SKIP
    failures = []

    def expect(cond, msg):
        print(("ok: " if cond else "FAILED: ") + msg, flush=True)
        if not cond:
            failures.append(msg)
        return cond

    with tempfile.TemporaryDirectory(prefix="hp-bench-test-") as tmp:
        out = os.path.join(tmp, "bench.json")
        cmd = [sys.executable, os.environ["HP_BENCH_PY"], "--smoke", "--json", out,
               "--build", os.environ["HP_BUILD_DIR"]]
        print("$ " + " ".join(cmd), flush=True)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, timeout=840)
        if not expect(r.returncode == 0, f"the runner exits 0 (got {r.returncode})") or \
                not expect(os.path.exists(out), "the runner wrote its JSON"):
            return 1
        with open(out) as f:
            res = json.load(f)

    expect(isinstance(res.get("rows"), list) and res["rows"], "the JSON has table rows")
    expect("machine" in res and "kernel" in res["machine"], "the JSON describes the machine")
    cases = res.get("cases", {})
    for c in CASES:
        if c == "S7":
            s7 = [k for k in cases if k.startswith("S7 ")]
            expect(len(s7) >= 3, f"S7 has its thread/client configurations ({s7})")
            for k in s7:
                expect("error" not in cases[k], f"{k} ran without error")
                for m in S7_MODES:
                    expect(m in cases[k]["runs"], f"{k} has a {m} run")
            continue
        if not expect(c in cases, f"case {c} is in the JSON"):
            continue
        expect("error" not in cases[c], f"{c} ran without error: {cases[c].get('error', '')[:200]}")
        runs = cases[c]["runs"]
        for m in MODES.get(c, []):
            expect(m in runs and runs[m], f"{c} has a {m} run")
        expect(any(r["case"] == c for r in res["rows"]), f"{c} has a row in the table")

    # S12: every real program ran in every mode and has its rows
    s12_rows = [r for r in res["rows"] if r["case"] == "S12"]
    for name, (prefix, suffixes) in S12.items():
        c = cases.get(f"S12 {name}")
        if not expect(c is not None, f"S12 {name} is in the JSON"):
            continue
        expect("error" not in c, f"S12 {name} ran without error: {c.get('error', '')[:200]}")
        for m in ("never", "always", "hugepaged"):
            expect(c["runs"].get(m), f"S12 {name} has a {m} run")
        for suf in suffixes:
            expect(any(r["metric"].startswith(prefix) and r["metric"].endswith(suf) for r in s12_rows),
                   f"S12 {name} has its '{suf[2:]}' row")
        served = sum(r.get("faults_served", 0) for r in c["runs"].get("hugepaged", []))
        expect(served > 0, f"S12 {name}: hugepaged served the program's faults ({served:.0f})")

    # S14: every row, and the parts ran (or say why they were skipped)
    s14_rows = [r["metric"] for r in res["rows"] if r["case"] == "S14"]
    for m in S14_ROWS:
        expect(m in s14_rows, f"S14 has its '{m}' row")
    for name, modes in S14_PARTS.items():
        c = cases.get(f"S14 {name}")
        if not expect(c is not None, f"S14 {name} is in the JSON"):
            continue
        expect("error" not in c, f"S14 {name} ran without error: {c.get('error', '')[:200]}")
        if "skipped" in c:
            print(f"note: S14 {name} skipped: {c['skipped']}", flush=True)
            continue
        for m in modes:
            expect(c["runs"].get(m), f"S14 {name} has a {m} run")
        if name == "release":
            for r in c["runs"].get("hugepaged", []):
                expect(r.get("mismatches") == 0 and r.get("released_nonzero") == 0,
                       f"S14 release: data intact, released pages zero ({r.get('mismatches')}, "
                       f"{r.get('released_nonzero')})")
                expect(r.get("shmem_subpages_punched", 0) > 0,
                       f"S14 release: the daemon punched subpages ({r.get('shmem_subpages_punched')})")
        else:
            pmd = [r.get("pmd_bytes", 0) for r in c["runs"].get("hugepaged", [])]
            expect(pmd and min(pmd) > 0, f"S14 postgres: the postmaster's shared memory PMD-mapped ({pmd})")
            back = [r.get("nr_hugepages_after") for r in c["runs"].get("hugepaged huge_pages=on", [])]
            expect(back and all(b == 0 for b in back),
                   f"S14 postgres: with huge_pages=on the pool is back to 0 after every run ({back})")

    # hugepaged really managed the memory: served faults, and promotions where dense
    def hp_runs(c):
        rs = []
        for k, v in cases.get(c, {}).get("runs", {}).items():
            if k == "hugepaged" or k.endswith("clients"):
                rs += v
        return rs
    for c in [c for c in CASES if c not in ("S5", "S7", "S8")] + [k for k in cases if k.startswith("S7 ")]:
        rs = hp_runs(c)
        if not rs:
            continue
        served = sum(r.get("faults_served", 0) for r in rs)
        expect(served > 0, f"{c}: hugepaged served faults ({served:.0f})")
        if c in PROMOTING:
            prom = sum(r.get("promotions", 0) for r in rs)
            expect(prom > 0, f"{c}: hugepaged promoted regions ({prom:.0f})")
    print("PASS" if not failures else "failed properties:\n" + "\n".join("  - " + f for f in failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
