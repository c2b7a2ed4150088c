# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared helpers for the hugepaged integration tests.

Owns the life cycle of everything a test starts: a private daemon on a socket
in a temporary directory, and workload processes (each in its own session so
that a whole process tree can be killed). Whatever happens -- a failed
assertion, an exception, SIGTERM from `meson test` on timeout -- every
process is killed and the directory removed. Tests must never leave anything
behind on the machine, and never depend on wall-clock performance.

Paths of the built programs come from the environment that tests/meson.build
sets: HUGEPAGED, HUGEPAGED_RUN, HP_WORKLOAD (and HUGEPAGED_PRELOAD).

Exit codes follow meson: 0 pass, 77 skip (with the reason printed), 1 fail.
"""

import atexit
import ctypes
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

SKIP = 77

_procs = []          # every Popen started by this module, killed at exit
_dirs = []           # temporary directories, removed at exit


class Skip(Exception):
    pass


class Failure(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# ---- process handling -----------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup():
    # Backstop if this test is SIGKILLed: children die with it. (The kernel
    # clears this when a child changes credentials, e.g. through setpriv; the
    # exit handlers below cover those.)
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(argv, stdout=None, stderr=None, env=None):
    """Start argv in a new session (process group) and remember it."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                         stderr=stderr, env=env, start_new_session=True,
                         preexec_fn=_child_setup)
    _procs.append(p)
    return p


def kill_tree(p, sig=signal.SIGKILL):
    """Signal p's whole process group (p leads it), then reap p."""
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def group_stacks(pgid):
    """One line per thread of process group pgid: pid/tid, comm, state and
    the innermost kernel functions (e.g. handle_userfault: a fault nobody
    serves). Needs root for the kernel stacks."""
    lines = []
    for pid in sorted(int(d) for d in os.listdir("/proc") if d.isdigit()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat_fields = f.read().rsplit(")", 1)[1].split()
            if int(stat_fields[2]) != pgid:
                continue
            for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
                base = f"/proc/{pid}/task/{tid}"
                with open(f"{base}/comm") as f:
                    comm = f.read().strip()
                with open(f"{base}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                try:
                    with open(f"{base}/stack") as f:
                        frames = [l.split("] ", 1)[-1].split("+")[0] for l in f.read().splitlines()[:4]]
                except OSError:
                    frames = ["?"]
                lines.append(f"{pid}/{tid} {comm} {state}: {' < '.join(frames)}")
        except (OSError, ValueError, IndexError):
            continue
    return lines


def wait_or_fail(ctx, p, timeout, what):
    """Wait for p (spawned) to end. After timeout seconds, log the kernel
    stacks of its process group (where it is stuck), kill it and fail with
    `what`, which says what should have happened."""
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for line in group_stacks(p.pid):
            log("  " + line)
        kill_tree(p)
        ctx.require(False, what)


def proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, D, T...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _cleanup():
    for p in _procs:
        # Only while p is unreaped is its pid (= its group id) surely ours.
        if p.returncode is not None:
            continue
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    _procs.clear()
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)
    _dirs.clear()


def _on_signal(signum, frame):
    # meson sends SIGTERM on timeout and SIGKILL 0.5 s later: clean up now.
    _cleanup()
    sys.stderr.write(f"hptest: killed by signal {signum}\n")
    os._exit(128 + signum)


class Result:
    """A finished workload: exit status, output, and its key=value lines."""

    def __init__(self, argv, rc, out, err):
        self.argv = argv
        self.rc = rc
        self.out = out
        self.err = err
        self.kv = parse_kv(out)

    def int(self, key):
        if key not in self.kv:
            raise Failure(f"workload printed no {key}=: {self.describe()}")
        return int(self.kv[key])

    def float(self, key):
        if key not in self.kv:
            raise Failure(f"workload printed no {key}=: {self.describe()}")
        return float(self.kv[key])

    def describe(self):
        return (f"\n  command: {' '.join(self.argv)}\n  exit status: {self.rc}"
                f"\n  stdout:\n{indent(self.out)}\n  stderr:\n{indent(self.err)}")


def indent(text, prefix="    "):
    text = text.rstrip("\n")
    return "\n".join(prefix + line for line in text.split("\n")) if text else prefix + "(empty)"


def parse_kv(text):
    kv = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            kv[k] = v.strip()
    return kv


def run(argv, timeout, env=None):
    """Run argv to completion (bounded by timeout seconds) and return a Result."""
    log("$ " + " ".join(argv))
    p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"command did not finish within {timeout} s; where its threads are:")
        for line in group_stacks(p.pid):
            log("  " + line)
        kill_tree(p)
        out, err = p.communicate()
        raise Failure(f"command did not finish within {timeout} s (killed): "
                      + Result(argv, None, out.decode(errors="replace"),
                               err.decode(errors="replace")).describe())
    # end anything the command left behind in its process group
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _procs.remove(p)
    r = Result(argv, p.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
    for line in r.err.splitlines():
        if line.strip():
            log("  stderr: " + line)
    return r


# ---- the test context -------------------------------------------------------

class Paths:
    def __init__(self):
        self.daemon = os.environ.get("HUGEPAGED", "")
        self.run = os.environ.get("HUGEPAGED_RUN", "")
        self.workload = os.environ.get("HP_WORKLOAD", "")
        self.preload = os.environ.get("HUGEPAGED_PRELOAD", "")


class Context:
    """What a test function gets: paths, a private temp dir, expectations."""

    def __init__(self):
        self.paths = Paths()
        self.tmp = tempfile.mkdtemp(prefix="hugepaged-test-")
        _dirs.append(self.tmp)
        # traversable by the unprivileged users of the access test
        os.chmod(self.tmp, 0o755)
        self.failures = []
        self.daemons = []

    def expect(self, cond, msg):
        """Record a failed property and go on (all failures are reported)."""
        if cond:
            log(f"ok: {msg}")
        else:
            log(f"FAILED: {msg}")
            self.failures.append(msg)
        return cond

    def require(self, cond, msg):
        """Like expect, but stop the test: later steps depend on this."""
        if not self.expect(cond, msg):
            raise Failure(msg)

    def daemon(self, *args, name="hugepaged"):
        d = Daemon(self, list(args), name)
        self.daemons.append(d)
        d.start()
        return d

    def managed(self, socket, argv, run_opts=()):
        """argv of `hugepaged-run --socket S [opts] -- hp-workload ...`."""
        return [self.paths.run, "--socket", socket, *run_opts, "--", self.paths.workload, *argv]


def require_root_and_uffd():
    if os.geteuid() != 0:
        raise Skip("needs root (the daemon opens /dev/userfaultfd and collapses other processes' memory)")
    if not os.path.exists("/dev/userfaultfd"):
        raise Skip("/dev/userfaultfd is missing (kernel without CONFIG_USERFAULTFD or < 6.1)")


def require_binaries(paths):
    for what, path in (("daemon (HUGEPAGED)", paths.daemon),
                       ("hugepaged-run (HUGEPAGED_RUN)", paths.run),
                       ("workload (HP_WORKLOAD)", paths.workload)):
        if not path:
            raise Failure(f"{what}: path not set; run the tests with `meson test -C build`")
        if not os.access(path, os.X_OK):
            raise Failure(f"{what}: {path} is not built")


# ---- the daemon -------------------------------------------------------------

_GONE = re.compile(r"\bclient (\d+)\b.*\bgone\b")
_KV_INT = re.compile(r"\b([a-z_][a-z0-9_]*)=(\d+)\b")


class Daemon:
    """A hugepaged on a private socket, logging to a file in the temp dir."""

    def __init__(self, ctx, args, name):
        self.ctx = ctx
        self.socket = os.path.join(ctx.tmp, f"{name}.sock")
        self.log_path = os.path.join(ctx.tmp, f"{name}.log")
        # an empty configuration: the host's /etc/hugepaged must not matter
        self.config = os.path.join(ctx.tmp, f"{name}.conf")
        with open(self.config, "w"):
            pass
        self.argv = [ctx.paths.daemon, "--socket", self.socket, "--config", self.config,
                     "--foreground", "--log-level", "debug", "--bus", "none", *args]
        self.proc = None
        self.exit_status = None

    def start(self, timeout=15):
        log("$ " + " ".join(self.argv) + f" 2>{self.log_path}")
        logf = open(self.log_path, "wb")
        try:
            self.proc = spawn(self.argv, stdout=logf, stderr=logf)
        finally:
            logf.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise Failure(f"daemon exited with status {self.proc.returncode} at start:\n"
                              + indent(self.log()))
            try:
                if stat.S_ISSOCK(os.stat(self.socket).st_mode):
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise Failure(f"daemon did not create {self.socket} within {timeout} s:\n" + indent(self.log()))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM; return the exit status (None if it had to be killed)."""
        if self.proc is None or self.exit_status is not None:
            return self.exit_status
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_tree(self.proc)
                self.exit_status = None
                return None
        self.exit_status = self.proc.returncode
        return self.exit_status

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.exit_status = self.proc.returncode

    def log_mentions(self, pid, timeout=0):
        pat = re.compile(rf"(?<![0-9]){pid}(?![0-9])")
        end = time.monotonic() + timeout
        while True:
            if pat.search(self.log()):
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)

    def client_stats(self, pid, timeout=30):
        """Counters of the `client PID ... gone` log lines of pid, summed over
        its connections (hugepaged-run's probe and the program itself share a
        pid). Waits until the last log line about pid is such a line, i.e.
        every connection of pid has ended; None if there is none in time."""
        end = time.monotonic() + timeout
        while True:
            about = self.lines_about(pid)
            gone = [l for l in about if (m := _GONE.search(l)) and int(m.group(1)) == pid]
            if about and gone and about[-1] is gone[-1]:
                break
            if time.monotonic() >= end:
                if gone:
                    log(f"  (pid {pid}: log lines after its last 'gone' line within {timeout} s)")
                break
            time.sleep(0.1)
        if not gone:
            return None
        total = {}
        for l in gone:
            log(f"  daemon: {l.strip()}")
            for k, v in _KV_INT.findall(l[_GONE.search(l).end():]):
                total[k] = total.get(k, 0) + int(v)
        return total

    def lines_about(self, pid):
        pat = re.compile(rf"(?<![0-9]){pid}(?![0-9])")
        return [l for l in self.log().splitlines() if pat.search(l)]


# ---- entry point ------------------------------------------------------------

def main(test, needs_root=True):
    """Run test(ctx) and exit with the meson status; always clean up."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    atexit.register(_cleanup)
    ctx = None
    status = 0
    try:
        if needs_root:
            require_root_and_uffd()
        ctx = Context()
        require_binaries(ctx.paths)
        test(ctx)
        for d in ctx.daemons:
            if d.proc is not None and d.exit_status is None and d.alive():
                rc = d.stop()
                ctx.expect(rc == 0, f"daemon exits 0 on SIGTERM (got {rc})")
        if ctx.failures:
            status = 1
    except Skip as e:
        log(f"SKIP: {e}")
        status = SKIP
    except Failure as e:
        log(f"FAILED: {e}")
        status = 1
    except Exception:
        import traceback
        traceback.print_exc()
        status = 1
    finally:
        if ctx is not None:
            for d in ctx.daemons:
                if d.alive():
                    d.stop(timeout=5)
                if status == 1:
                    text = d.log().splitlines()
                    log(f"--- daemon log {d.log_path} (last 80 of {len(text)} lines) ---")
                    for l in text[-80:]:
                        log("  " + l)
            if ctx.failures:
                log("failed properties:\n" + "\n".join("  - " + f for f in ctx.failures))
        _cleanup()
    if status == 0:
        log("PASS")
    sys.exit(status)
