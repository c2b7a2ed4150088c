# SPDX-License-Identifier: LGPL-2.1-or-later
"""`hugepagectl metrics` for Prometheus: after a workload its output passes
`promtool check metrics`, hugepaged_faults_served_total equals the Manager's
FaultsServed, the client's hugepaged_client_faults_served_total (labelled
pid, uid, comm) equals its Client.FaultsServed, and the latency histograms
are real ones (cumulative buckets, +Inf equal to _count, _count > 0).
`--output FILE` replaces FILE by rename (a reader holding the old file keeps
it whole; no temporary file is left, mode 0644); `--openmetrics` names
counter families without _total and ends with # EOF."""

import os
import re
import shutil
import stat
import subprocess
import time

from dbustest import (Bus, Daemon, Failure, Skip, Workload, expect, hugepagectl, log, main, require_root,
                      tempdir, wait_for)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def samples(text):
    """{(name, labels): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise Failure(f"not a sample line: {line!r}")
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def promtool_check(text, what):
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    expect(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
           f"promtool check metrics passes on {what}" +
           ("" if r.returncode == 0 else f" (exit {r.returncode}: {r.stdout}{r.stderr})"))


def check_histogram(s, name):
    buckets = sorted(((float(re.search(r'le="([^"]+)"', labels).group(1)), v)
                      for (n, labels), v in s.items() if n == f"{name}_bucket"), key=lambda x: x[0])
    expect(len(buckets) > 2 and buckets[-1][0] == float("inf"), f"{name} has buckets up to +Inf")
    counts = [v for _, v in buckets]
    expect(all(a <= b for a, b in zip(counts, counts[1:])), f"{name} buckets are cumulative")
    count, total = s[(f"{name}_count", "")], s[(f"{name}_sum", "")]
    expect(counts[-1] == count and count > 0, f"{name}: +Inf bucket = _count = {count:.0f} > 0")
    expect(total > 0, f"{name}_sum is {total} s")
    return count


def test():
    require_root()
    if not shutil.which("promtool"):
        raise Skip("promtool is missing (Debian package prometheus; ./test.sh installs it)")
    d = tempdir()
    bus = Bus(d)
    daemon = Daemon(d, bus=bus)
    w = Workload(daemon, d)
    path = f"/org/hugepaged1/client/{w.pid}"
    expect(w.ask("touch 1") == "touched", "the workload wrote every page of its 64 MiB")
    wait_for("a promotion", lambda: bus.get("Promotions") > 0, timeout=60)

    # The counters settle once the workload is idle and the promotions are done.
    def settled():
        a = (bus.get("FaultsServed"), bus.get("Promotions"), bus.get("FaultsServed", path, "org.hugepaged1.Client"))
        time.sleep(0.5)     # more than two snapshots (one per 200 ms)
        b = (bus.get("FaultsServed"), bus.get("Promotions"), bus.get("FaultsServed", path, "org.hugepaged1.Client"))
        return b if a == b else None
    served, promotions, client_served = wait_for("the counters to settle", settled, timeout=60)

    r = hugepagectl(bus, "metrics")
    expect(r.returncode == 0, f"hugepagectl metrics exits 0 ({r.stderr.strip()})")
    text = r.stdout
    promtool_check(text, "the output")
    s = samples(text)
    got = s.get(("hugepaged_faults_served_total", ""))
    expect(got == served and served > 0, f"hugepaged_faults_served_total {got} = FaultsServed {served}")
    got = s.get(("hugepaged_promotions_total", ""))
    expect(got == promotions, f"hugepaged_promotions_total {got} = Promotions {promotions}")
    labels = [k[1] for k in s if k[0] == "hugepaged_client_faults_served_total"]
    mine = [lab for lab in labels if f'pid="{w.pid}"' in lab]
    expect(len(mine) == 1 and 'uid="0"' in mine[0] and f'comm="{w.exe[:15]}"' in mine[0],
           f"one hugepaged_client_faults_served_total labelled pid, uid, comm for the client ({mine})")
    got = s[("hugepaged_client_faults_served_total", mine[0])]
    expect(got == client_served, f"its value {got} = Client.FaultsServed {client_served}")
    populated = bus.get("PagesPopulated")
    expect(s.get(("hugepaged_populated_bytes_total", "")) == populated * 4096,
           "hugepaged_populated_bytes_total is PagesPopulated in bytes")
    check_histogram(s, "hugepaged_fault_latency_seconds")
    check_histogram(s, "hugepaged_promotion_latency_seconds")
    counters = [ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE") and ln.endswith(" counter")]
    expect(counters and all(n.startswith("hugepaged_") and n.endswith("_total") for n in counters),
           f"all {len(counters)} counters are hugepaged_*_total")

    # --output: replaced by rename, never rewritten in place.
    out = os.path.join(d, "textfile", "hugepaged.prom")
    os.mkdir(os.path.dirname(out))
    with open(out, "w") as f:
        f.write("# old\n")
    old = open(out)
    r = hugepagectl(bus, "metrics", "--output", out)
    expect(r.returncode == 0 and r.stdout == "", f"metrics --output exits 0 and prints nothing ({r.stderr.strip()})")
    expect(old.read() == "# old\n", "a reader of the old file still reads it whole (the new one was renamed in)")
    old.close()
    expect(os.listdir(os.path.dirname(out)) == ["hugepaged.prom"], "no temporary file is left behind")
    expect(stat.S_IMODE(os.stat(out).st_mode) == 0o644, "the file is mode 0644")
    with open(out) as f:
        written = f.read()
    promtool_check(written, "the --output file")
    expect(samples(written).get(("hugepaged_faults_served_total", "")) == served,
           "the file has the same hugepaged_faults_served_total")
    r = hugepagectl(bus, "metrics", "--output", os.path.join(d, "no-such-dir", "x.prom"))
    expect(r.returncode != 0 and "no-such-dir" in r.stderr, f"an unwritable --output fails and says where: "
           f"{r.stderr.strip()}")

    r = hugepagectl(bus, "metrics", "--openmetrics")
    om = r.stdout
    expect(r.returncode == 0 and om.endswith("# EOF\n"), "--openmetrics ends with # EOF")
    expect("# TYPE hugepaged_faults_served counter" in om and "# UNIT hugepaged_fault_latency_seconds seconds" in om,
           "--openmetrics: counter families without _total, UNIT lines")
    expect(samples(om).get(("hugepaged_faults_served_total", "")) == served,
           "--openmetrics has the same hugepaged_faults_served_total sample")

    w.exit()
    log(text[:2000])


main(test)
