# SPDX-License-Identifier: LGPL-2.1-or-later
"""Without a reachable bus the daemon says so once, retries quietly, and
serves faults as usual; with --bus none it does not try at all. A bus that
appears later is used, and so is a bus that restarts: the daemon publishes
org.hugepaged1 on it again."""

import os
import subprocess
import time

from dbustest import Bus, Daemon, Workload, env_path, expect, main, require_root, spawn, tempdir, wait_for


class Address:
    def __init__(self, address):
        self.address = address


def test():
    require_root()
    d = tempdir()
    missing = Address(f"unix:path={d}/bus")     # Bus(d) listens here later
    # Not Daemon(): it waits for the name on the bus, and there is no bus yet.
    daemon = Daemon.__new__(Daemon)
    daemon.socket = os.path.join(d, "hugepaged.sock")
    daemon.log_path = os.path.join(d, "hugepaged.log")
    daemon.logf = open(daemon.log_path, "w")
    daemon.proc = spawn([env_path("HUGEPAGED"), "--socket", daemon.socket, "--config", "/dev/null",
                         "--bus-address", missing.address], stderr=daemon.logf, stdout=subprocess.DEVNULL)
    wait_for("the daemon's socket", lambda: os.path.exists(daemon.socket))

    w = Workload(daemon, d)
    expect(w.ask("touch 1") == "touched", "a client writes its memory")
    expect(w.huge_kb() > 0 or wait_for("huge pages", w.huge_kb, timeout=30), "and gets huge pages without a bus")
    time.sleep(6)   # past one quiet retry
    lines = [l for l in daemon.log().splitlines() if "org.hugepaged1" in l]
    expect(len(lines) == 1 and "cannot publish org.hugepaged1" in lines[0],
           f"the daemon said once that the bus is unreachable: {lines}")
    expect(daemon.alive(), "and keeps running")

    bus = Bus(d)
    wait_for("org.hugepaged1 on the bus that appeared", lambda: bus.busctl(
        "status", "org.hugepaged1", check=False).returncode == 0, timeout=15)
    wait_for("the client on the bus", lambda: [c[0] for c in bus.clients()] == [w.pid])
    expect(bus.get("FaultsServed") > 0, "its counters were kept")

    bus.proc.terminate()
    bus.proc.wait()
    bus = Bus(d)        # the same path, a new bus (and a new guid)
    wait_for("org.hugepaged1 on the restarted bus", lambda: bus.busctl(
        "status", "org.hugepaged1", check=False).returncode == 0, timeout=15)
    expect([c[0] for c in bus.clients()] == [w.pid] and daemon.alive(),
           "a restarted bus gets org.hugepaged1 back, with the client")
    w.exit()

    d2 = tempdir()
    quiet = Daemon(d2, "--log-level", "info")
    w2 = Workload(quiet, d2)
    expect(w2.ask("touch 1") == "touched", "--bus none: a client is served")
    w2.exit()
    expect("d-bus" not in quiet.log().lower() and "org.hugepaged1" not in quiet.log(),
           "--bus none: no word about D-Bus")


main(test)
