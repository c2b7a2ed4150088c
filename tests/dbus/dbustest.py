# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared helpers for the D-Bus and operations tests (suite 'dbus').

Each test gets its own temporary directory, its own private dbus-daemon
(configured by the test: permissive, or like the system bus with the
project's policy file) and its own hugepaged on a private socket. Whatever
happens -- a failed check, an exception, SIGTERM from `meson test` -- every
process started here is killed by its pid and the directory removed.

Paths of the built programs come from the environment tests/dbus/meson.build
sets. Exit codes follow meson: 0 pass, 77 skip (reason printed), 1 fail.
"""

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
NOBODY = 65534

_procs = []
_dirs = []


class Skip(Exception):
    pass


class Failure(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def env_path(name):
    p = os.environ.get(name)
    if not p:
        raise Skip(f"${name} is not set (run through meson test)")
    return p


def _cleanup():
    for p in reversed(_procs):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            except ProcessLookupError:
                pass
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def tempdir():
    d = tempfile.mkdtemp(prefix="hugepaged-dbus-")
    os.chmod(d, 0o755)      # uid 65534 reaches the bus socket in here
    _dirs.append(d)
    return d


def spawn(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    _procs.append(p)
    return p


def run(argv, check=False, timeout=60, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise Failure(f"{' '.join(argv)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def require_root():
    if os.geteuid() != 0:
        raise Skip("needs root: hugepaged opens /dev/userfaultfd")
    if not os.path.exists("/dev/userfaultfd"):
        raise Skip("/dev/userfaultfd is missing (kernel without userfaultfd)")


def wait_for(what, fn, timeout=20.0, interval=0.05):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise Failure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ---- the bus ---------------------------------------------------------------

PERMISSIVE_POLICY = """
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
"""

# Like Debian's system.conf: deny by default, then the project's policy file.
SYSTEM_LIKE_POLICY = """
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{policy_file}</include>
"""


class Bus:
    """A private dbus-daemon whose socket uid 65534 may reach."""

    def __init__(self, directory, policy=PERMISSIVE_POLICY):
        self.dir = directory
        sock = os.path.join(directory, "bus")
        conf = os.path.join(directory, "bus.conf")
        with open(conf, "w") as f:
            f.write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  {policy}
</busconfig>
""")
        self.proc = spawn(["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile",
                           "--print-address=1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise Failure("dbus-daemon did not start")
        wait_for("the bus socket", lambda: os.path.exists(sock))
        os.chmod(sock, 0o777)

    def busctl(self, *args, user=None, check=True):
        argv = ["busctl", f"--address={self.address}", *args]
        return run(as_user(argv, user), check=check)

    def get(self, prop, path="/org/hugepaged1", iface="org.hugepaged1.Manager", user=None):
        r = self.busctl("--json=short", "get-property", "org.hugepaged1", path, iface, prop, user=user)
        return json.loads(r.stdout)["data"]

    def clients(self):
        r = self.busctl("--json=short", "call", "org.hugepaged1", "/org/hugepaged1", "org.hugepaged1.Manager",
                        "ListClients")
        return json.loads(r.stdout)["data"][0]


def as_user(argv, uid):
    if uid is None:
        return argv
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv]


# ---- the daemon ------------------------------------------------------------

class Daemon:
    def __init__(self, directory, *args, bus=None, config=None, wrapper=()):
        self.dir = directory
        self.socket = os.path.join(directory, "hugepaged.sock")
        self.log_path = os.path.join(directory, "hugepaged.log")
        argv = [*wrapper, env_path("HUGEPAGED"), "--socket", self.socket, "--log-level", "debug"]
        argv += ["--config", config or "/dev/null"]
        argv += ["--bus-address", bus.address] if bus else ["--bus", "none"]
        argv += list(args)
        self.logf = open(self.log_path, "w")
        self.proc = spawn(argv, stderr=self.logf, stdout=self.logf)
        wait_for("the daemon's socket", lambda: os.path.exists(self.socket) or self.proc.poll() is not None)
        if self.proc.poll() is not None:
            raise Failure(f"hugepaged exited {self.proc.returncode}:\n{self.log()}")
        if bus:
            wait_for("org.hugepaged1 on the bus",
                     lambda: bus.busctl("status", "org.hugepaged1", check=False).returncode == 0)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def alive(self):
        return self.proc.poll() is None


def hugepagectl(bus, *args, user=None):
    return run(as_user([env_path("HUGEPAGECTL"), "--address", bus.address, *args], user))


# A program that is managed through the preload shim and waits for orders on
# stdin: "touch STRIDE" writes every STRIDE-th page of each 2 MiB region of a
# 64 MiB mapping, "huge" prints the AnonHugePages of that mapping, "exit".
WORKLOAD = r"""
import mmap, sys
SIZE = 64 << 20
m = mmap.mmap(-1, SIZE, flags=mmap.MAP_PRIVATE)
import ctypes
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
print("ready", hex(addr), flush=True)
def huge():
    kb, inside = 0, False
    for line in open("/proc/self/smaps"):
        f = line.split()
        if "-" in f[0] and len(f) >= 5:
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            inside = lo < addr + SIZE and hi > addr
        elif inside and f[0] == "AnonHugePages:":
            kb += int(f[1])
    return kb
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "touch":
        stride = int(cmd[1])
        for off in range(0, SIZE, 4096 * stride):
            m[off] = 1
        print("touched", flush=True)
    elif cmd[0] == "huge":
        print("huge_kb", huge(), flush=True)
    elif cmd[0] == "exit":
        break
"""


class Workload:
    """The WORKLOAD above, run under hugepaged-run; backend="hugetlb" makes
    its 64 MiB mapping 32 hugetlb pages of 2 MiB (hugepaged-run --backend)."""

    def __init__(self, daemon, directory, backend=None):
        script = os.path.join(directory, "workload.py")
        with open(script, "w") as f:
            f.write(WORKLOAD)
        python = os.path.realpath(sys.executable)
        self.exe = os.path.basename(python)
        argv = [env_path("HUGEPAGED_RUN"), "--socket", daemon.socket]
        argv += ["--backend", backend] if backend else []
        argv += ["--", python, script]
        env = dict(os.environ, HUGEPAGED_PRELOAD=env_path("HUGEPAGED_PRELOAD"))
        self.proc = spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise Failure(f"workload did not start: {line!r}")
        self.addr = int(line.split()[1], 16)
        self.pid = self.proc.pid

    def ask(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def huge_kb(self):
        return int(self.ask("huge").split()[1])

    def exit(self):
        self.proc.stdin.write("exit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def main(test):
    try:
        test()
    except Skip as e:
        log(f"SKIP: {e}")
        sys.exit(SKIP)
    except Failure as e:
        log(f"FAIL: {e}")
        sys.exit(1)
    log("PASS")
    sys.exit(0)


def expect(cond, what):
    if not cond:
        raise Failure(what)
    log(f"ok: {what}")
