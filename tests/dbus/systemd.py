# SPDX-License-Identifier: LGPL-2.1-or-later
"""The service manager's side: started through socket activation
(systemd-socket-activate stands in for hugepaged.socket) the daemon takes
the passed socket, serves the client whose connection started it, and
tells $NOTIFY_SOCKET READY=1, STATUS=, WATCHDOG=1 (at the rate
$WATCHDOG_USEC asks), RELOADING=1 on SIGHUP and STOPPING=1 at exit."""

import os
import shutil
import signal
import socket
import time

from dbustest import Skip, Workload, env_path, expect, main, require_root, spawn, tempdir, wait_for


class Notify:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages = []

    def collect(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        return self.messages

    def count(self, prefix):
        return sum(1 for m in self.messages for line in m.split("\n") if line.startswith(prefix))


def test():
    require_root()
    if not shutil.which("systemd-socket-activate"):
        raise Skip("systemd-socket-activate is missing (Debian package systemd)")
    d = tempdir()
    sock = os.path.join(d, "hugepaged.sock")
    notify = Notify(os.path.join(d, "notify"))
    log_path = os.path.join(d, "hugepaged.log")
    env = dict(os.environ, NOTIFY_SOCKET=os.path.join(d, "notify"), WATCHDOG_USEC="400000")
    proc = spawn(["systemd-socket-activate", "--seqpacket", "-l", sock, "-E", "NOTIFY_SOCKET", "-E",
                  "WATCHDOG_USEC", env_path("HUGEPAGED"), "--bus", "none", "--config", "/dev/null",
                  "--socket", os.path.join(d, "not-this-one.sock")],
                 env=env, stderr=open(log_path, "w"))
    wait_for("the activation socket", lambda: os.path.exists(sock))

    class Target:
        socket = sock
    w = Workload(Target, d)   # its connection starts the daemon
    expect(w.ask("touch 1") == "touched", "the client whose connection started the daemon writes its memory")
    expect(wait_for("huge pages", w.huge_kb, timeout=30) > 0, "and is served (huge pages)")
    with open(log_path) as f:
        text = f.read()
    expect("(socket activation)" in text and not os.path.exists(os.path.join(d, "not-this-one.sock")),
           "the daemon took the passed socket")

    notify.collect(1.5)
    expect(notify.count("READY=1") == 1, "READY=1 once")
    expect(notify.count("STATUS=") >= 1 and any("client" in m for m in notify.messages), "STATUS= with clients")
    expect(notify.count("WATCHDOG=1") >= 3, f"WATCHDOG=1 at least every 200 ms ({notify.count('WATCHDOG=1')})")
    proc.send_signal(signal.SIGHUP)
    notify.collect(0.5)
    expect(notify.count("RELOADING=1") == 1 and notify.count("READY=1") == 2, "SIGHUP: RELOADING=1 then READY=1")
    w.exit()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    notify.collect(0.3)
    expect(proc.returncode == 0 and notify.count("STOPPING=1") == 1, "SIGTERM: STOPPING=1, exit 0")


main(test)
