# SPDX-License-Identifier: LGPL-2.1-or-later
"""hugepaged.conf: a broken line makes `hugepaged --config` exit non-zero
naming file:line: key; the shipped file is valid with every key commented
or uncommented; a reload (SIGHUP or D-Bus Reload) with a broken file keeps
the settings in force and serving goes on; a good reload applies without
dropping clients: those without an explicit policy take the new defaults,
[Program:NAME] matches the executable's name."""

import os
import re
import signal
import subprocess
import sys

from dbustest import (Bus, Daemon, Failure, Workload, env_path, expect, hugepagectl, log, main, require_root, run,
                      spawn, tempdir, wait_for)

CLIENT = "org.hugepaged1.Client"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def parse_checks(d):
    hugepaged = env_path("HUGEPAGED")
    bad = os.path.join(d, "bad.conf")
    write(bad, "[Policy]\n# a comment\nThreshold = 600\nDensePrediction = yes\n")
    for extra in ([], ["--check-config"]):
        r = run([hugepaged, "--config", bad, "--bus", "none", "--socket", os.path.join(d, "x.sock"), *extra])
        expect(r.returncode == 2 and f"{bad}:3: Threshold: '600' is outside 1..512" in r.stderr,
               f"hugepaged --config bad.conf {' '.join(extra)} exits 2 naming file:line: key "
               f"({r.stderr.strip().splitlines()[0] if r.stderr.strip() else 'no message'})")
    expect(not os.path.exists(os.path.join(d, "x.sock")), "it did not start")

    r = run([hugepaged, "--config", os.path.join(d, "missing.conf"), "--check-config"])
    expect(r.returncode == 2 and "missing.conf" in r.stderr, "a missing --config file is an error")

    write(bad, "[Policy]\nThresold = 8\n[Pool]\nHugetlbMaxSize = 3M\n")
    r = run([hugepaged, "--config", bad, "--check-config"])
    expect(r.returncode == 2 and f"{bad}:2: Thresold: unknown key" in r.stderr
           and f"{bad}:4: HugetlbMaxSize: 3M is not a multiple of 2M" in r.stderr,
           "unknown keys are warned about, every error is named")

    shipped = os.path.join(env_path("HP_SOURCE_ROOT"), "conf", "hugepaged.conf")
    r = run([hugepaged, "--config", shipped, "--check-config"])
    expect(r.returncode == 0 and r.stderr == "", "the shipped hugepaged.conf is valid")
    with open(shipped) as f:
        text = re.sub(r"(?m)^#(\[?[A-Z][A-Za-z:-]*\]?(=.*)?)$", r"\1", f.read())
    uncommented = os.path.join(d, "uncommented.conf")
    write(uncommented, text)
    r = run([hugepaged, "--config", uncommented, "--check-config"])
    expect(r.returncode == 0 and "[warning]" not in r.stderr and "[error]" not in r.stderr
           and "Threshold=8" in text and "[Program:redis-server]" in text,
           "with every key uncommented it is valid too")


# A client of libhugepaged that sets its own threshold over the socket
# (hugepaged_set_threshold), then waits for "exit" on stdin.
LIBCLIENT = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
h = ctypes.c_void_p()
if lib.hugepaged_connect(sys.argv[2].encode(), ctypes.byref(h)) < 0:
    sys.exit("connect failed")
if lib.hugepaged_set_threshold(h, int(sys.argv[3])) < 0:
    sys.exit("set_threshold failed")
print("ready", flush=True)
sys.stdin.readline()
"""


def libclient(daemon, d, threshold):
    script = os.path.join(d, "libclient.py")
    write(script, LIBCLIENT)
    lib = os.path.join(os.path.dirname(env_path("HUGEPAGED_PRELOAD")), "libhugepaged.so.0")
    p = spawn([sys.executable, script, lib, daemon.socket, str(threshold)], stdin=subprocess.PIPE,
              stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("ready"):
        raise Failure(f"the libhugepaged client did not start: {line!r}")
    return p


def set_policy(bus, pid, *props):
    """busctl SetPolicy PID with (name, signature, value) triples."""
    args = [str(pid), str(len(props))]
    for name, sig, value in props:
        args += [name, sig, value]
    return bus.busctl("call", "org.hugepaged1", "/org/hugepaged1", "org.hugepaged1.Manager", "SetPolicy", "ua{sv}",
                      *args, check=False)


def reload_checks(d):
    conf = os.path.join(d, "hugepaged.conf")
    bus = Bus(d)

    exe = os.path.basename(os.path.realpath(sys.executable))
    write(conf, f"[Policy]\nThreshold = 100\nDensePrediction = no\n\n[Program:{exe}]\nFaultWindow = 8\n")
    daemon = Daemon(d, bus=bus, config=conf)
    expect(bus.get("DefaultThreshold") == 100 and bus.get("ConfigFile") == conf, "the file's Threshold is in force")

    a = Workload(daemon, d)
    b = Workload(daemon, d)
    pa, pb = (f"/org/hugepaged1/client/{w.pid}" for w in (a, b))
    wait_for("both clients", lambda: len(bus.clients()) == 2)
    expect(bus.get("Threshold", pa, CLIENT) == 100, "a new client takes Threshold=100")
    expect(bus.get("FaultWindow", pa, CLIENT) == 8 and bus.get("Executable", pa, CLIENT) == exe,
           f"[Program:{exe}] applies to it (FaultWindow 8)")
    r = hugepagectl(bus, "set-threshold", str(b.pid), "20")
    expect(r.returncode == 0, "client B gets an explicit threshold")

    # The same layers on every path (hugepaged.conf(5), POLICY PRECEDENCE):
    # a client's own threshold over the file, [Program:] for the rest ...
    c = libclient(daemon, d, 30)
    pc = f"/org/hugepaged1/client/{c.pid}"
    wait_for("the libhugepaged client", lambda: len(bus.clients()) == 3)
    wait_for("its own threshold", lambda: bus.get("Threshold", pc, CLIENT) == 30)
    expect(bus.get("FaultWindow", pc, CLIENT) == 8 and bus.get("PolicyExplicit", pc, CLIENT) is True,
           "a client's own threshold (30) keeps [Program:]'s FaultWindow (8)")
    # ... and SetPolicy over both, but dense prediction only as the file allows
    r = set_policy(bus, c.pid, ("DensePrediction", "b", "true"), ("FaultWindow", "u", "2"))
    expect(r.returncode == 0, f"SetPolicy DensePrediction=true FaultWindow=2 ({r.stderr.strip()})")
    expect(bus.get("FaultWindow", pc, CLIENT) == 2 and bus.get("Threshold", pc, CLIENT) == 30,
           "SetPolicy's FaultWindow (2) over [Program:]'s; the client's threshold stays")
    expect(bus.get("DensePrediction", pc, CLIENT) is False,
           "SetPolicy cannot turn dense prediction on against DensePrediction=no")

    # broken file: refused, old settings stay, clients stay, serving goes on
    write(conf, "[Policy]\nThreshold = oops\n")
    r = hugepagectl(bus, "reload")
    expect(r.returncode == 1 and f"{conf}:2: Threshold: 'oops'" in r.stderr
           and "org.hugepaged1.Error.ConfigInvalid" in r.stderr,
           f"D-Bus Reload of a broken file fails naming file:line: key ({r.stderr.strip()})")
    daemon.signal(signal.SIGHUP)
    wait_for("the SIGHUP reload's error", lambda: daemon.log().count(f"{conf}:2: Threshold:") >= 2)
    expect(daemon.alive(), "the daemon survives a broken reload")
    expect(bus.get("DefaultThreshold") == 100, "the old Threshold stays in force")
    expect(len(bus.clients()) == 3, "no client was dropped")
    before = bus.get("FaultsServed")
    expect(a.ask("touch 1") == "touched", "client A writes its memory after the failed reload")
    wait_for("faults served after the failed reload", lambda: bus.get("FaultsServed") > before)
    expect(a.huge_kb() > 0, "and gets huge pages: serving continues")

    # good file: applied to clients without an explicit policy
    write(conf, f"[Policy]\nThreshold = 200\n[Program:{exe}]\nFaultWindow = 4\n")
    daemon.signal(signal.SIGHUP)
    wait_for("the new DefaultThreshold", lambda: bus.get("DefaultThreshold") == 200)
    expect(bus.get("Threshold", pa, CLIENT) == 200 and bus.get("FaultWindow", pa, CLIENT) == 4,
           "client A (no explicit policy) takes the reloaded policy")
    expect(bus.get("Threshold", pb, CLIENT) == 20, "client B keeps its explicit threshold")
    expect(bus.get("FaultWindow", pb, CLIENT) == 4, "and takes the file's new FaultWindow, which it never set")
    expect(bus.get("Threshold", pc, CLIENT) == 30 and bus.get("FaultWindow", pc, CLIENT) == 2,
           "the libhugepaged client keeps its own threshold and SetPolicy's FaultWindow")
    expect(bus.get("DensePrediction", pc, CLIENT) is True,
           "and has dense prediction now that the file allows it (SetPolicy asked for it)")
    c.stdin.write("exit\n")
    c.stdin.flush()
    c.wait(timeout=30)
    wait_for("the libhugepaged client gone", lambda: len(bus.clients()) == 2)
    expect(len(bus.clients()) == 2, "both clients are still connected")
    write(conf, "[Policy]\nThreshold = 300\n")
    r = hugepagectl(bus, "reload")
    expect(r.returncode == 0 and bus.get("DefaultThreshold") == 300, "hugepagectl reload applies a good file")
    log(daemon.log()[-1500:])
    a.exit()
    b.exit()


def test():
    d = tempdir()
    parse_checks(d)
    require_root()
    reload_checks(tempdir())


main(test)
