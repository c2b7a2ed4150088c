# SPDX-License-Identifier: LGPL-2.1-or-later
"""Coverage over D-Bus: a python3 client maps 64 MiB and writes all of it
(the daemon manages it and promotes it); its Client object's ManagedBytes
then covers the 64 MiB, AnonymousBytes equals Anonymous of its own
smaps_rollup (it is idle, so the two reads see the same memory), and
CoveragePermille is ManagedBytes / AnonymousBytes. GetClientStats,
`hugepagectl client PID --json`, the Manager's totals, `hugepagectl status
--json` and the text of `hugepagectl status|clients|client` agree. When the
client goes, the totals drop back to 0."""

from dbustest import Bus, Daemon, Workload, expect, hugepagectl, json, log, main, require_root, tempdir, wait_for

CLIENT = "org.hugepaged1.Client"
MiB = 1 << 20


def anonymous(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    return None


def get_client_stats(bus, pid):
    r = bus.busctl("--json=short", "call", "org.hugepaged1", "/org/hugepaged1", "org.hugepaged1.Manager",
                   "GetClientStats", "u", str(pid))
    return json.loads(r.stdout)["data"][0]


def test():
    require_root()
    d = tempdir()
    bus = Bus(d)
    daemon = Daemon(d, bus=bus)
    expect(bus.get("AnonymousBytes") == 0 and bus.get("CoveragePermille") == 0,
           "Manager.AnonymousBytes and CoveragePermille are 0 with no client")

    w = Workload(daemon, d)
    path = f"/org/hugepaged1/client/{w.pid}"
    wait_for("the client's object", lambda: any(c[0] == w.pid for c in bus.clients()))
    w.ask("touch 1")
    # a reading taken after the touch (the daemon reads each client about once a second)
    managed = wait_for("ManagedBytes >= 64 MiB", lambda: (lambda v: v if v >= 64 * MiB else None)(
        bus.get("ManagedBytes", path, CLIENT)), timeout=30)
    anon = bus.get("AnonymousBytes", path, CLIENT)
    mine = anonymous(w.pid)
    expect(anon == mine, f"Client.AnonymousBytes {anon} == Anonymous of /proc/{w.pid}/smaps_rollup {mine}")
    expect(managed <= anon, f"ManagedBytes {managed} <= AnonymousBytes {anon}")
    permille = bus.get("CoveragePermille", path, CLIENT)
    expect(permille == managed * 1000 // anon,
           f"Client.CoveragePermille {permille} == 1000 x ManagedBytes / AnonymousBytes")
    log(f"client {w.pid}: managed {managed >> 20} MiB of {anon >> 20} MiB anonymous: {permille / 10:.1f}%")

    stats = get_client_stats(bus, w.pid)
    expect((stats.get("ManagedBytes"), stats.get("AnonymousBytes"), stats.get("CoveragePermille")) ==
           (managed, anon, permille), f"GetClientStats has the same three figures ({stats})")
    r = hugepagectl(bus, "--json", "client", str(w.pid))
    c = json.loads(r.stdout)
    expect((c["managed_bytes"], c["anonymous_bytes"], c["coverage_permille"]) == (managed, anon, permille),
           "hugepagectl client PID --json has managed_bytes, anonymous_bytes, coverage_permille")
    r = hugepagectl(bus, "--json", "status")
    s = json.loads(r.stdout)
    expect((s["managed_bytes"], s["anonymous_bytes"], s["coverage_permille"]) == (managed, anon, permille),
           "hugepagectl status --json: the totals of the only client")
    expect(bus.get("ManagedBytes") == managed, "Manager.ManagedBytes is the sum over the clients")
    pct = f"{permille / 10:.1f}%"
    for args in (["status"], ["clients"], ["client", str(w.pid)]):
        r = hugepagectl(bus, *args)
        expect(r.returncode == 0 and pct in r.stdout, f"hugepagectl {' '.join(args)} shows the coverage {pct}")
    log(hugepagectl(bus, "status").stdout)

    w.exit()
    wait_for("the client to go", lambda: not bus.clients(), timeout=10)
    wait_for("the Manager's totals to drop to 0",
             lambda: bus.get("AnonymousBytes") == 0 and bus.get("ManagedBytes") == 0, timeout=10)
    expect("coverage_permille=" in daemon.log(), "the client-gone line has the coverage")


main(test)
