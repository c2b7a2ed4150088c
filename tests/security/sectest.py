# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers shared by tests/security and tests/reliability, on top of
tests/integration/hptest.py (which owns every process and directory a test
makes, and cleans up whatever happens).

- Daemon: hptest's daemon with a given hugepaged.conf, a socket that may be
  shared with an earlier (killed) daemon, and a start that waits for the
  daemon to say it listens (after a kill -9 the old socket file is still
  there, so its presence proves nothing).
- What the tests measure of a daemon: open fds, resident memory,
  capabilities, from /proc.
- Running commands as other users (setpriv) on copies of the binaries that
  every user can reach.
"""

import os
import re
import shutil
import stat
import subprocess
import time

import hptest

CAP_KILL, CAP_SYS_PTRACE, CAP_SYS_NICE = 5, 19, 23
KEPT_CAPS = (1 << CAP_KILL) | (1 << CAP_SYS_PTRACE) | (1 << CAP_SYS_NICE)


class Daemon(hptest.Daemon):
    def __init__(self, ctx, args=(), name="hugepaged", conf="", socket=None):
        super().__init__(ctx, list(args), name)
        with open(self.config, "w") as f:
            f.write(conf)
        if socket:
            self.argv[self.argv.index(self.socket)] = socket
            self.socket = socket

    def start(self, timeout=15):
        hptest.log("$ " + " ".join(self.argv) + f" 2>{self.log_path}")
        logf = open(self.log_path, "wb")
        try:
            self.proc = hptest.spawn(self.argv, stdout=logf, stderr=logf)
        finally:
            logf.close()
        self.exit_status = None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise hptest.Failure(f"daemon exited with status {self.proc.returncode} at start:\n"
                                     + hptest.indent(self.log()))
            if "listening on" in self.log():
                try:
                    if stat.S_ISSOCK(os.stat(self.socket).st_mode):
                        return
                except FileNotFoundError:
                    pass
            time.sleep(0.02)
        raise hptest.Failure(f"daemon did not listen on {self.socket} within {timeout} s:\n"
                             + hptest.indent(self.log()))

    @property
    def pid(self):
        return self.proc.pid


def start_daemon(ctx, *args, name="hugepaged", conf="", socket=None):
    d = Daemon(ctx, args, name, conf, socket)
    ctx.daemons.append(d)
    d.start()
    return d


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def status_field(pid, key, task=None):
    path = f"/proc/{pid}/task/{task}/status" if task else f"/proc/{pid}/status"
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == key:
                return v.strip()
    return None


def rss_kib(pid):
    return int(status_field(pid, "VmRSS").split()[0])


def settle_fds(pid, want, timeout=15):
    """Wait until the daemon holds `want` fds (work in flight finishes:
    a promotion job keeps its client's fds until it is done); return the
    last count seen."""
    end = time.monotonic() + timeout
    n = fd_count(pid)
    while n != want and time.monotonic() < end:
        time.sleep(0.1)
        n = fd_count(pid)
    return n


def count_lines(d, pattern):
    pat = re.compile(pattern)
    return sum(1 for l in d.log().splitlines() if pat.search(l))


def wait_lines(d, pattern, n, timeout=60):
    """Wait until the daemon's log has at least n lines matching pattern."""
    end = time.monotonic() + timeout
    while True:
        got = count_lines(d, pattern)
        if got >= n or time.monotonic() >= end:
            return got
        time.sleep(0.1)


def daemon_errors(d):
    """Lines the daemon logged at error level, and sanitizer reports."""
    return [l for l in d.log().splitlines()
            if "[err]" in l or "[error]" in l or "Sanitizer" in l or "runtime error" in l]


# ---- other users ------------------------------------------------------------

def setpriv():
    p = shutil.which("setpriv")
    if not p:
        raise hptest.Skip("setpriv (util-linux) is not installed")
    return p


def as_user(uid, gid, argv):
    return [setpriv(), f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]


def copy_for_everyone(ctx, *paths):
    """Copies of programs in the test's 0755 directory (the build tree may
    be where other users cannot go, a clone under /root in CI)."""
    bindir = os.path.join(ctx.tmp, "bin")
    os.makedirs(bindir, mode=0o755, exist_ok=True)
    os.chmod(bindir, 0o755)
    out = []
    for src in paths:
        dst = os.path.join(bindir, os.path.basename(src))
        shutil.copy2(src, dst)
        os.chmod(dst, 0o755)
        out.append(dst)
    return out


def run_bg(argv, out_path, env=None):
    """Start argv with stdout and stderr to files; return the Popen."""
    hptest.log("$ " + " ".join(argv) + f" >{out_path}")
    with open(out_path, "w") as out, open(out_path + ".err", "w") as err:
        return hptest.spawn(argv, stdout=out, stderr=err, env=env)


def finish_bg(p, argv, out_path, timeout):
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for line in hptest.group_stacks(p.pid):
            hptest.log("  " + line)
        hptest.kill_tree(p)
        raise hptest.Failure(f"{' '.join(argv)} did not finish within {timeout} s")
    with open(out_path) as f:
        out = f.read()
    with open(out_path + ".err") as f:
        err = f.read()
    return hptest.Result(argv, p.returncode, out, err)
