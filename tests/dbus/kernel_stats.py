# SPDX-License-Identifier: LGPL-2.1-or-later
"""In-kernel (eBPF) statistics over D-Bus and in hugepagectl.

With tracing on (the daemon logged "fault tracing on"): a workload under the
shim makes Manager.KernelFaults > 0 with p50 > 0 and p99 >= p50, its client
object's KernelFaults > 0 while it runs, GetClientStats carries the same
keys, and `hugepagectl stats --json` reports the Manager's values (both read
from one snapshot). With tracing off ("fault tracing off: WHY"): Tracing is
false and every kernel counter 0, and the test says why.

Every wait is for a snapshot that includes what was done, never for a time.
"""

import re

from dbustest import (Bus, Daemon, Failure, Workload, expect, hugepagectl, json, log, main, require_root,
                      tempdir, wait_for)

MANAGER = "org.hugepaged1.Manager"
CLIENT = "org.hugepaged1.Client"

# D-Bus property -> key of `hugepagectl stats --json`
KERNEL = {
    "Tracing": "tracing",
    "KernelFaults": "kernel_faults",
    "KernelFaultLatencyP50Ns": "kernel_fault_latency_p50_ns",
    "KernelFaultLatencyP99Ns": "kernel_fault_latency_p99_ns",
    "CollapsesOk": "collapses_ok",
    "CollapsesMapped": "collapses_mapped",
    "CollapsesFailed": "collapses_failed",
    "KhugepagedCollapses": "khugepaged_collapses",
    "ThpSplits": "thp_splits",
}
COUNTERS = [k for k in KERNEL if k != "Tracing"]


def get_all(bus, path="/org/hugepaged1", iface=MANAGER):
    """Every property from one GetAll call, hence from one snapshot."""
    r = bus.busctl("--json=short", "call", "org.hugepaged1", path, "org.freedesktop.DBus.Properties", "GetAll",
                   "s", iface)
    return {k: v["data"] for k, v in json.loads(r.stdout)["data"][0].items()}


def kernel_of(props):
    return {k: props[k] for k in KERNEL}


def consistent_stats(bus):
    """Manager properties and `hugepagectl stats --json` of the same snapshot:
    a reading of hugepagectl framed by two equal D-Bus readings."""
    def attempt():
        before = kernel_of(get_all(bus))
        r = hugepagectl(bus, "stats", "--json")
        if r.returncode != 0:
            raise Failure(f"hugepagectl stats --json exited {r.returncode}: {r.stderr}")
        stats = json.loads(r.stdout)
        after = kernel_of(get_all(bus))
        return before == after and (after, stats)
    return wait_for("two equal readings around hugepagectl stats", attempt, timeout=60)


def test():
    require_root()
    d = tempdir()
    bus = Bus(d)
    daemon = Daemon(d, bus=bus)

    line = wait_for("the daemon's tracing line",
                    lambda: re.search(r"fault tracing (on|off)[^\n]*", daemon.log()))
    tracing = line.group(1) == "on"
    log(f"daemon: {line.group(0)}")

    props = get_all(bus)
    for name in KERNEL:
        expect(name in props, f"Manager has the property {name}")
    expect(props["Tracing"] is tracing, f"Manager.Tracing is {tracing}, as the log says")

    w = Workload(daemon, d)
    path = f"/org/hugepaged1/client/{w.pid}"
    wait_for("the client's object", lambda: any(c[0] == w.pid for c in bus.clients()))
    w.ask("touch 1")

    if tracing:
        faults = wait_for("the client's KernelFaults in a snapshot",
                          lambda: bus.get("KernelFaults", path, CLIENT), timeout=60)
        expect(faults > 0, f"Client.KernelFaults > 0 while it runs ({faults})")
    cprops = get_all(bus, path, CLIENT)
    for name in KERNEL:
        expect(name in cprops, f"Client has the property {name}")
    expect(cprops["Tracing"] is tracing, f"Client.Tracing is {tracing}")

    r = bus.busctl("--json=short", "call", "org.hugepaged1", "/org/hugepaged1", MANAGER, "GetClientStats",
                   "u", str(w.pid))
    cstats = json.loads(r.stdout)["data"][0]
    for name in KERNEL:
        expect(name in cstats, f"GetClientStats has the key {name}")
    expect(cstats["Tracing"] == int(tracing), f"GetClientStats Tracing is {int(tracing)}")
    if tracing:
        expect(cstats["KernelFaults"] > 0, f"GetClientStats KernelFaults > 0 ({cstats['KernelFaults']})")

    r = hugepagectl(bus, "client", str(w.pid))
    expect(r.returncode == 0 and f"kernel: tracing {'on' if tracing else 'off'}" in r.stdout,
           "hugepagectl client PID shows the kernel figures")
    r = hugepagectl(bus, "status")
    log(r.stdout)
    expect(r.returncode == 0 and f"Kernel: tracing {'on' if tracing else 'off'}" in r.stdout,
           "hugepagectl status shows the kernel line")

    w.exit()
    # the snapshot without the client is taken after its totals moved to the sums of gone processes
    wait_for("the client's object to go", lambda: not bus.clients(), timeout=30)
    props, stats = consistent_stats(bus)
    log(json.dumps(stats, indent=2))
    for name, key in KERNEL.items():
        expect(key in stats and stats[key] == props[name],
               f"hugepagectl stats --json {key} == Manager.{name} ({props[name]})")

    if tracing:
        expect(props["KernelFaults"] > 0, f"Manager.KernelFaults > 0 ({props['KernelFaults']})")
        expect(props["KernelFaultLatencyP50Ns"] > 0,
               f"Manager.KernelFaultLatencyP50Ns > 0 ({props['KernelFaultLatencyP50Ns']})")
        expect(props["KernelFaultLatencyP99Ns"] >= props["KernelFaultLatencyP50Ns"],
               f"KernelFaultLatencyP99Ns >= P50 ({props['KernelFaultLatencyP99Ns']})")
    else:
        log(f"tracing is off ({line.group(0)}): checking that the kernel counters are 0")
        for name in COUNTERS:
            expect(props[name] == 0, f"Manager.{name} is 0 with tracing off")
    expect(daemon.alive(), "the daemon is still running")


main(test)
