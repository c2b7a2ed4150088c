# SPDX-License-Identifier: LGPL-2.1-or-later
"""SetPolicy and Reload are privileged. On a bus that lets anyone call, an
unprivileged caller (uid 65534) is refused by the daemon with
org.hugepaged1.Error.AccessDenied; root succeeds and the new threshold takes
effect for that client only: with 32 of 512 pages touched per region, the
client whose threshold was set to 16 gets huge pages, the other (default 64)
none. On a bus configured like the system bus with the project's policy
file, the bus itself refuses the unprivileged call and still lets anyone
read statistics."""

import os

from dbustest import (NOBODY, SYSTEM_LIKE_POLICY, Bus, Daemon, Failure, Workload, env_path, expect, hugepagectl,
                      log, main, require_root, tempdir, wait_for)

CLIENT = "org.hugepaged1.Client"


def set_policy_argv(pid, threshold):
    return ["call", "org.hugepaged1", "/org/hugepaged1", "org.hugepaged1.Manager", "SetPolicy", "ua{sv}",
            str(pid), "2", "Threshold", "u", str(threshold), "DensePrediction", "b", "false"]


def daemon_checks():
    d = tempdir()
    bus = Bus(d)
    daemon = Daemon(d, bus=bus)
    a = Workload(daemon, d)
    b = Workload(daemon, d)
    pa, pb = (f"/org/hugepaged1/client/{w.pid}" for w in (a, b))
    wait_for("both clients", lambda: len(bus.clients()) == 2)

    # unprivileged: refused by the daemon, with a named error
    r = hugepagectl(bus, "set-threshold", str(a.pid), "16", user=NOBODY)
    expect(r.returncode == 1 and "org.hugepaged1.Error.AccessDenied" in r.stderr,
           f"uid 65534: set-threshold refused with org.hugepaged1.Error.AccessDenied ({r.stderr.strip()})")
    r = bus.busctl(*set_policy_argv(a.pid, 16), user=NOBODY, check=False)
    expect(r.returncode != 0 and "needs root" in r.stderr, f"uid 65534: busctl SetPolicy refused ({r.stderr.strip()})")
    r = hugepagectl(bus, "reload", user=NOBODY)
    expect(r.returncode == 1 and "org.hugepaged1.Error.AccessDenied" in r.stderr, "uid 65534: reload refused")
    expect(bus.get("Threshold", pa, CLIENT) == 64, "the refused call changed nothing")
    expect(bus.get("FaultsServed", user=NOBODY) >= 0, "uid 65534 may read statistics")

    # root: accepted, visible at once
    bus.busctl(*set_policy_argv(a.pid, 16))
    expect(bus.get("Threshold", pa, CLIENT) == 16, "root: SetPolicy sets Client.Threshold to 16")
    expect(bus.get("PolicyExplicit", pa, CLIENT) is True, "the policy is marked explicit")
    expect(bus.get("DensePrediction", pa, CLIENT) is False, "DensePrediction set too")
    expect(bus.get("Threshold", pb, CLIENT) == 64, "the other client keeps the default threshold")
    r = hugepagectl(bus, "set-threshold", str(b.pid), "600")
    expect(r.returncode == 2 or r.returncode == 1, "an out-of-range threshold is refused by hugepagectl")
    r = bus.busctl(*set_policy_argv(b.pid, 600), check=False)
    expect(r.returncode != 0 and "outside 1..512" in r.stderr, "and by the daemon (InvalidPolicy)")
    r = hugepagectl(bus, "set-threshold", "999999", "16")
    expect(r.returncode == 1 and "999999" in r.stderr, f"an unknown pid is refused ({r.stderr.strip()})")

    # the threshold takes effect: 32 scattered pages per region
    for w in (a, b):
        expect(w.ask("touch 16") == "touched", f"client {w.pid} touched every 16th page")
    wait_for("client A's promotions", lambda: bus.get("Promotions", pa, CLIENT) >= 32, timeout=60)
    huge_a = wait_for("huge pages in client A", lambda: a.huge_kb(), timeout=30)
    expect(huge_a >= 32 * 2048, f"client A (threshold 16) has huge pages: AnonHugePages {huge_a} kB")
    expect(bus.get("Promotions", pb, CLIENT) == 0 and bus.get("RegionsHuge", pb, CLIENT) == 0,
           "client B (threshold 64) got no promotion")
    expect(b.huge_kb() == 0, "client B has no huge pages (AnonHugePages 0 kB)")
    # the statistics are a snapshot refreshed every 200 ms: wait for the one
    # taken after the touches
    def b_settled():
        reserved = bus.get("RegionsReserved", pb, CLIENT)
        unused = bus.get("PagesReservedUnused", pb, CLIENT)
        return (reserved, unused) if reserved == 32 and unused <= 32 * 480 else None
    try:
        reserved, unused = wait_for("client B's reservations in the snapshot", b_settled, timeout=10)
    except Failure:
        reserved, unused = bus.get("RegionsReserved", pb, CLIENT), bus.get("PagesReservedUnused", pb, CLIENT)
    expect(reserved == 32 and 32 * (512 - 64) <= unused <= 32 * 480,
           f"client B holds its 32 regions as reservations, mostly unused ({reserved} regions, {unused} pages)")
    log(hugepagectl(bus, "clients").stdout)
    a.exit()
    b.exit()


def system_bus_policy_checks():
    d = tempdir()
    policy = os.path.join(env_path("HP_SOURCE_ROOT"), "conf", "dbus", "org.hugepaged1.conf")
    bus = Bus(d, SYSTEM_LIKE_POLICY.format(policy_file=policy))
    daemon = Daemon(d, bus=bus)
    w = Workload(daemon, d)
    wait_for("the client", lambda: len(bus.clients()) == 1)
    expect(bus.get("Clients", user=NOBODY) == 1, "system policy: anyone may read properties")
    r = hugepagectl(bus, "clients", user=NOBODY)
    expect(r.returncode == 0 and str(w.pid) in r.stdout, f"system policy: anyone may list clients {r.stderr}")
    r = hugepagectl(bus, "metrics", user=NOBODY)
    expect(r.returncode == 0 and f'pid="{w.pid}"' in r.stdout and "hugepaged_fault_latency_seconds_count" in r.stdout,
           f"system policy: anyone may read the metrics, histograms and clients included {r.stderr}")
    r = hugepagectl(bus, "set-threshold", str(w.pid), "16", user=NOBODY)
    expect(r.returncode == 1 and "org.freedesktop.DBus.Error.AccessDenied" in r.stderr,
           f"system policy: the bus refuses SetPolicy from uid 65534 ({r.stderr.strip()})")
    r = hugepagectl(bus, "set-threshold", str(w.pid), "16")
    expect(r.returncode == 0 and bus.get("Threshold", f"/org/hugepaged1/client/{w.pid}", CLIENT) == 16,
           "system policy: root may call SetPolicy")
    w.exit()


def test():
    require_root()
    daemon_checks()
    system_bus_policy_checks()


main(test)
