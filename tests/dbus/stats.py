# SPDX-License-Identifier: LGPL-2.1-or-later
"""Statistics over D-Bus: after a workload, the Manager's FaultsServed is > 0
and equals what `hugepagectl stats --json` reports; per-client objects appear
and disappear with their clients, and ClientAdded/ClientRemoved are sent.
With the hugetlb backend on, a hugetlb workload's sequential touch has pages
filled ahead: HugetlbPrefilled of its object, of GetClientStats and of
`hugepagectl client --json` agree and are > 0, and the Manager's equals what
`hugepagectl status` and `status --json` report."""

import os
import re
import subprocess

from dbustest import (Bus, Daemon, Workload, expect, hugepagectl, json, log, main, require_root, spawn,
                      tempdir, wait_for)


def test():
    require_root()
    d = tempdir()
    bus = Bus(d)
    daemon = Daemon(d, bus=bus)
    monitor = spawn(["dbus-monitor", "--address", bus.address,
                     "type='signal',interface='org.hugepaged1.Manager'"],
                    stdout=open(os.path.join(d, "monitor.log"), "w"), stderr=subprocess.DEVNULL)

    expect(bus.get("FaultsServed") == 0, "FaultsServed is 0 before any client")
    w = Workload(daemon, d)
    path = f"/org/hugepaged1/client/{w.pid}"
    wait_for("the client's object", lambda: any(c[0] == w.pid for c in bus.clients()))
    expect(bus.clients() == [[w.pid, 0, w.exe[:15], path]] or bus.clients()[0][0] == w.pid,
           f"ListClients lists pid {w.pid}")
    tree = bus.busctl("tree", "org.hugepaged1").stdout
    expect(path in tree, f"{path} is in the object tree")
    expect(bus.get("Pid", path, "org.hugepaged1.Client") == w.pid, "Client.Pid is the workload's pid")
    expect(bus.get("Executable", path, "org.hugepaged1.Client") == w.exe,
           f"Client.Executable is {w.exe}")

    w.ask("touch 1")        # every page: dense, promoted
    ranges = bus.get("Ranges", path, "org.hugepaged1.Client")
    expect(any(lo <= w.addr and hi >= w.addr + (64 << 20) for lo, hi, _ in ranges),
           "Client.Ranges covers the workload's 64 MiB mapping")
    served = wait_for("the client's counters", lambda: bus.get("FaultsServed", path, "org.hugepaged1.Client"))
    expect(served > 0, f"Client.FaultsServed > 0 while it runs ({served})")

    r = hugepagectl(bus, "--json", "ranges", str(w.pid))
    expect(r.returncode == 0 and any(x["length"] >= (64 << 20) for x in json.loads(r.stdout)),
           "hugepagectl ranges PID --json lists the mapping")
    for args in (["status"], ["clients"], ["client", str(w.pid)]):
        r = hugepagectl(bus, *args)
        expect(r.returncode == 0 and str(w.pid) in r.stdout, f"hugepagectl {' '.join(args)} shows the client")
    r = hugepagectl(bus, "ranges", str(w.pid))
    expect(r.returncode == 0 and "MiB" in r.stdout, "hugepagectl ranges PID shows the mapping")
    log(hugepagectl(bus, "status").stdout)
    # promotions finish in a worker; those of a client that has gone are dropped
    wait_for("the client's first promotion",
             lambda: bus.get("Promotions", path, "org.hugepaged1.Client") > 0, timeout=60)

    w.exit()
    wait_for("the client's object to go", lambda: not bus.clients(), timeout=10)
    expect(path not in bus.busctl("tree", "org.hugepaged1").stdout, f"{path} left the object tree")
    r = bus.busctl("get-property", "org.hugepaged1", path, "org.hugepaged1.Client", "Pid", check=False)
    expect(r.returncode != 0, "the gone client's object answers no more")

    faults = bus.get("FaultsServed")
    r = hugepagectl(bus, "stats", "--json")
    stats = json.loads(r.stdout)
    log(r.stdout)
    expect(faults > 0, f"Manager.FaultsServed > 0 after the workload ({faults})")
    expect(stats["faults_served"] == faults, f"hugepagectl stats --json faults_served == FaultsServed ({faults})")
    expect(stats["promotions"] == bus.get("Promotions") and stats["promotions"] > 0,
           f"promotions agree and are > 0 ({stats['promotions']})")
    expect(stats["clients"] == 0 and stats["ranges"] == 0, "no clients or ranges left")
    keys = ["faults_served", "fault_latency_p50_ns", "fault_latency_p99_ns", "pages_populated",
            "regions_reserved", "pages_reserved_unused", "promotions", "promotions_failed",
            "promotion_latency_p50_ns", "promotion_latency_p99_ns", "regions_huge", "reservations_released",
            "clients", "ranges"]
    kernel = ["tracing", "kernel_faults", "kernel_fault_latency_p50_ns", "kernel_fault_latency_p99_ns",
              "collapses_ok", "collapses_mapped", "collapses_failed", "khugepaged_collapses", "thp_splits"]
    budget = ["promotions_skipped_headroom", "promotions_skipped_pressure", "promotions_skipped_bloat",
              "bloat_bytes", "pressure_level", "pressure_events", "pressure_triggers", "pressure_released_bytes",
              "pressure_first_release_ns", "mem_available_bytes"]
    expect(list(stats) == keys + kernel + budget,
           "stats --json has the DESIGN.md counters, then the kernel's, then budgets and pressure")
    expect(stats["fault_latency_p50_ns"] > 0 and stats["fault_latency_p99_ns"] >= stats["fault_latency_p50_ns"],
           "fault latency percentiles are reported")

    def signals():
        with open(os.path.join(d, "monitor.log")) as f:
            text = f.read()
        return "member=ClientAdded" in text and "member=ClientRemoved" in text and text
    text = wait_for("ClientAdded and ClientRemoved", signals, timeout=5)
    expect(f"uint32 {w.pid}" in text, "the signals name the workload's pid")

    r = hugepagectl(bus, "client", "999999")
    expect(r.returncode == 1 and "999999" in r.stderr, f"an unknown pid is an error: {r.stderr.strip()}")
    hugetlb(bus, daemon, d)
    expect(daemon.alive(), "the daemon is still running")


def client_stats(bus, pid):
    r = bus.busctl("--json=short", "call", "org.hugepaged1", "/org/hugepaged1", "org.hugepaged1.Manager",
                   "GetClientStats", "u", str(pid))
    return json.loads(r.stdout)["data"][0]


def hugetlb(bus, daemon, d):
    """HugetlbPrefilled: pages the fill threads copied ahead of a sequential
    stream of hugetlb faults, per client and in total."""
    line = wait_for("the daemon's hugetlb line",
                    lambda: re.search(r"hugetlb pool: \d+ pages of 2 MiB at start|the hugetlb backend is off",
                                      daemon.log()))
    if "is off" in line.group(0):
        log(f"daemon: {line.group(0)}: no hugetlb workload")
        r = hugepagectl(bus, "status", "--json")
        expect(r.returncode == 0 and json.loads(r.stdout)["hugetlb_prefilled"] == bus.get("HugetlbPrefilled") == 0,
               "Manager.HugetlbPrefilled is 0 with the hugetlb backend off, as hugepagectl status --json says")
        return

    pages = 32              # the workload's 64 MiB
    w = Workload(daemon, d, backend="hugetlb")
    path = f"/org/hugepaged1/client/{w.pid}"
    wait_for("the hugetlb client's object", lambda: any(c[0] == w.pid for c in bus.clients()))
    w.ask("touch 1")        # the first touch of each page, in order: a stream
    # Each page is put in once, at its fault or ahead of it by a fill thread;
    # once all are counted the client's figures no longer move.
    s = wait_for("every hugetlb page in the client's counters",
                 lambda: (lambda s: s["HugetlbFaults"] + s["HugetlbPrefilled"] == pages and s)(
                     client_stats(bus, w.pid)), timeout=60)
    filled = s["HugetlbPrefilled"]
    expect(s["HugetlbPages"] == pages, f"GetClientStats HugetlbPages is {pages} ({s['HugetlbPages']})")
    expect(filled > 0, f"GetClientStats HugetlbPrefilled > 0 after a sequential touch ({filled}, "
           f"{s['HugetlbFaults']} faults)")
    expect(bus.get("HugetlbPrefilled", path, "org.hugepaged1.Client") == filled,
           f"Client.HugetlbPrefilled == GetClientStats HugetlbPrefilled ({filled})")
    r = hugepagectl(bus, "client", str(w.pid), "--json")
    expect(r.returncode == 0 and json.loads(r.stdout)["hugetlb_prefilled"] == filled,
           f"hugepagectl client PID --json hugetlb_prefilled == {filled}")

    w.exit()
    wait_for("the hugetlb client's object to go", lambda: not bus.clients(), timeout=10)
    total = bus.get("HugetlbPrefilled")
    expect(total == filled, f"Manager.HugetlbPrefilled == the only hugetlb client's ({total})")
    r = hugepagectl(bus, "status", "--json")
    expect(r.returncode == 0 and json.loads(r.stdout)["hugetlb_prefilled"] == total,
           f"hugepagectl status --json hugetlb_prefilled == Manager.HugetlbPrefilled ({total})")
    r = hugepagectl(bus, "status")
    log(r.stdout)
    expect(r.returncode == 0 and f"{total} filled ahead" in r.stdout,
           f"hugepagectl status shows {total} pages filled ahead")


main(test)
