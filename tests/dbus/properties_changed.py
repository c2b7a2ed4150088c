# SPDX-License-Identifier: LGPL-2.1-or-later
"""PropertiesChanged: during a workload the Manager object and the client's
object send org.freedesktop.DBus.Properties.PropertiesChanged with the new
FaultsServed, whose value is what Get returns afterwards; only properties
that changed are listed (HugetlbBudget and Clients, constant during the
workload, never are); and the signals are rate-limited: at most one per
object per statistics snapshot (5 per second), not one per fault."""

import os
import re
import subprocess
import time

from dbustest import Bus, Daemon, Workload, expect, log, main, require_root, spawn, tempdir, wait_for

ENTRY = re.compile(r'dict entry\(\s*string "(\w+)"\s*variant\s+\w+ (\S+)\s*\)')


def signals(path):
    """[(time, object path, {property: value})] of the PropertiesChanged in a dbus-monitor log."""
    with open(path) as f:
        text = f.read()
    out = []
    for block in re.split(r"\n(?=signal )", text):
        head = re.match(r"signal time=(\S+) .*path=(\S+); interface=org.freedesktop.DBus.Properties; "
                        r"member=PropertiesChanged", block)
        if head:
            out.append((float(head.group(1)), head.group(2), dict(ENTRY.findall(block))))
    return out


def test():
    require_root()
    d = tempdir()
    bus = Bus(d)
    daemon = Daemon(d, bus=bus)
    w = Workload(daemon, d)
    path = f"/org/hugepaged1/client/{w.pid}"
    wait_for("the client's object", lambda: any(c[0] == w.pid for c in bus.clients()))
    time.sleep(0.5)         # the client's first snapshot is the base of its changes
    mon_log = os.path.join(d, "monitor.log")
    monitor = spawn(["dbus-monitor", "--address", bus.address,
                     "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'"],
                    stdout=open(mon_log, "w"), stderr=subprocess.DEVNULL)
    wait_for("dbus-monitor to subscribe", lambda: os.path.getsize(mon_log) > 0)
    start = time.monotonic()
    for stride in (64, 16, 4, 1):       # a few phases, so the counters change several times
        expect(w.ask(f"touch {stride}") == "touched", f"the workload touched every {stride}th page")
        time.sleep(0.3)
    time.sleep(0.6)                     # the last snapshot and its signals
    elapsed = time.monotonic() - start
    served = bus.get("FaultsServed")
    client_served = bus.get("FaultsServed", path, "org.hugepaged1.Client")
    time.sleep(0.3)
    monitor.terminate()
    monitor.wait()

    sigs = signals(mon_log)
    manager = [p for _, o, p in sigs if o == "/org/hugepaged1"]
    client = [p for _, o, p in sigs if o == path]
    log(f"{len(manager)} Manager and {len(client)} Client signals in {elapsed:.1f} s")
    with_faults = [p for p in manager if "FaultsServed" in p]
    expect(len(with_faults) >= 2, f"the Manager sent PropertiesChanged with FaultsServed ({len(with_faults)} times)")
    values = [int(p["FaultsServed"]) for p in with_faults]
    expect(values == sorted(values) and len(set(values)) == len(values),
           f"each carries a new, larger FaultsServed ({values[:8]}...)")
    expect(values[-1] == served, f"the last one is the final value, {served}")
    cvalues = [int(p["FaultsServed"]) for p in client if "FaultsServed" in p]
    expect(cvalues and cvalues[-1] == client_served,
           f"the client's object sent FaultsServed too, last {cvalues[-1] if cvalues else None} = {client_served}")
    listed = set().union(*manager, *client)
    expect(not listed & {"HugetlbBudget", "Clients", "Version", "ConfigFile"},
           f"unchanged properties are never listed ({sorted(listed)})")
    expect(all(p for p in manager + client), "no signal lists nothing")
    # One snapshot per 200 ms tick: at most elapsed/0.2 signals per object, plus the edges.
    bound = elapsed / 0.2 + 3
    expect(len(manager) <= bound and len(client) <= bound,
           f"at most one signal per object per snapshot ({len(manager)}, {len(client)} <= {bound:.0f}) "
           f"for {served} faults")
    w.exit()


main(test)
