# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared helpers for the tests of real programs under hugepaged-run.

The tests in tests/programs/ run programs nobody here wrote -- Debian's
python3, sqlite3, redis-server -- under hugepaged-run next to a private
daemon, and compare them with the same programs run without the shim. The
daemon, process clean-up and exit codes come from tests/integration/hptest.py
(imported from there, unchanged); this module adds what those programs need:
locating them (skip when missing), reading a process's memory counters, free
loopback ports, and a small Redis client (RESP over a socket, pipelined).

Standard library only. Sizes are bytes unless a name says otherwise.
"""

import os
import pwd
import shutil
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "integration"))

import hptest  # noqa: E402  (after the path set-up)
from hptest import Failure, Skip, log  # noqa: E402,F401

# meson test sets MALLOC_PERTURB_, which makes glibc's malloc write to every
# block it hands out (but never to the shim's): the programs run as users run
# them, or the comparisons with and without the shim would mean nothing.
os.environ.pop("MALLOC_PERTURB_", None)

# Debian's interpreter, not whatever python3 comes first in PATH.
PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20
GiB = 1 << 30


def require_program(path, package):
    """path (absolute, or a name looked up in PATH) or Skip naming the package."""
    found = path if os.path.isabs(path) else shutil.which(path)
    if not found or not os.access(found, os.X_OK):
        raise Skip(f"{path} is not installed (Debian package {package}; ./test.sh installs it)")
    return found


def thp_enabled():
    """The kernel's THP mode: always, madvise or never (None if unknown)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else None


def memory(pid):
    """Rss and AnonHugePages (and the rest of smaps_rollup) of pid, in bytes."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0].endswith(":") and parts[2] == "kB":
                out[parts[0][:-1]] = int(parts[1]) * 1024
    return out


def mib(n):
    return f"{n / MiB:.0f} MiB"


def managed(ctx, d, argv, opts=()):
    """argv run under `hugepaged-run --socket <d's socket> [opts] --`."""
    return [ctx.paths.run, "--socket", d.socket, *opts, "--", *argv]


def free_port():
    """A loopback TCP port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, step=0.1):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            raise Failure(f"{what}: not within {timeout} s")
        time.sleep(step)


def gone_lines(d, pid):
    """The daemon's `client PID ... gone` lines for pid (one per connection)."""
    return [l for l in d.lines_about(pid) if f"client {pid} " in l and " gone " in l]


def counters(line):
    """The key=integer counters of one daemon log line."""
    out = {}
    for word in line.split():
        k, sep, v = word.partition("=")
        if sep and v.isdigit():
            out[k] = int(v)
    return out


# ---- Redis ----------------------------------------------------------------------

class RedisError(Exception):
    pass


class Redis:
    """A minimal RESP2 client: commands are lists of bytes/str/int, replies
    come back as bytes, int, list, None or RedisError. pipeline() sends many
    commands in one write and reads all their replies."""

    def __init__(self, port, timeout=120):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0

    def close(self):
        self.sock.close()

    @staticmethod
    def encode(cmd):
        out = [b"*%d\r\n" % len(cmd)]
        for a in cmd:
            if isinstance(a, int):
                a = b"%d" % a
            elif isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n" % len(a))
            out.append(a)
            out.append(b"\r\n")
        return b"".join(out)

    def _fill(self):
        if self.pos > (1 << 20):
            del self.buf[:self.pos]
            self.pos = 0
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise Failure("redis closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) - self.pos < n + 2:
            self._fill()
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n + 2
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise Failure(f"redis: unexpected reply {line[:80]!r}")

    def pipeline(self, cmds):
        self.sock.sendall(b"".join(self.encode(c) for c in cmds))
        return [self._reply() for _ in cmds]

    def call(self, *cmd):
        r = self.pipeline([cmd])[0]
        if isinstance(r, RedisError):
            raise r
        return r

    def info(self, section):
        out = {}
        for line in self.call("INFO", section).decode().splitlines():
            k, sep, v = line.partition(":")
            if sep:
                out[k] = v.strip()
        return out


class RedisServer:
    """redis-server on a loopback port with its own configuration file and
    directory: no persistence unless asked (BGSAVE), DEBUG allowed from
    loopback. prefix: argv before redis-server (hugepaged-run ... --)."""

    def __init__(self, ctx, name, prefix=(), extra_conf=""):
        self.dir = os.path.join(ctx.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "redis.conf")
        with open(self.conf, "w") as f:
            f.write(f"""# {name}: a private instance for one test
bind 127.0.0.1
port {self.port}
protected-mode yes
daemonize no
dir {self.dir}
dbfilename dump.rdb
save ""
appendonly no
enable-debug-command local
logfile ""
{extra_conf}
""")
        self.log_path = os.path.join(self.dir, "redis.log")
        self.argv = [*prefix, require_program("/usr/bin/redis-server", "redis-server"), self.conf]
        self.proc = None
        self.name = name

    def start(self, timeout=60):
        log("$ " + " ".join(self.argv) + f" >{self.log_path}")
        with open(self.log_path, "wb") as logf:
            self.proc = hptest.spawn(self.argv, stdout=logf, stderr=logf)

        def up():
            if self.proc.poll() is not None:
                raise Failure(f"{self.name}: redis-server exited with {self.proc.returncode}:\n"
                              + hptest.indent(self.log()))
            try:
                c = Redis(self.port, timeout=5)
            except OSError:
                return None
            try:
                if c.call("PING") != b"PONG":
                    return None
                return c.info("persistence").get("loading") == "0"
            except RedisError:      # LOADING
                return None
            finally:
                c.close()
        wait_until(up, timeout, f"{self.name}: redis-server answers PING")
        return self

    @property
    def pid(self):
        """redis-server's own pid: hugepaged-run execs it, so the same."""
        return self.proc.pid

    def client(self):
        return Redis(self.port)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        """SHUTDOWN NOSAVE, then make sure it is gone."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            c = Redis(self.port, timeout=10)
            try:
                c.sock.sendall(Redis.encode(["SHUTDOWN", "NOSAVE"]))
                c.sock.recv(100)
            finally:
                c.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except Exception:
            hptest.kill_tree(self.proc)


# The data set: N keys of about VALUE bytes, every value derived from its key.
_BASE = b"".join(bytes([(i * 131 + (i >> 8) * 7) & 0xFF]) for i in range(8192))


def value_of(i, size):
    head = b"%d:" % i
    off = (i * 37) % 4096
    return head + _BASE[off:off + size - len(head)]


def redis_load(c, n, size, prefix="key:", batch=2000, first=0):
    """SET prefix<i> value_of(i) for i in [first, first+n), pipelined; every
    reply must be +OK."""
    for start in range(first, first + n, batch):
        cmds = [("SET", b"%s%d" % (prefix.encode(), i), value_of(i, size))
                for i in range(start, min(first + n, start + batch))]
        replies = c.pipeline(cmds)
        bad = [r for r in replies if r != b"OK"]
        if bad:
            raise Failure(f"SET {prefix}{start}..: {bad[0]!r}")


def redis_verify(c, n, size, prefix="key:", batch=1000):
    """MGET every key back; the number of keys whose value is wrong or missing."""
    wrong = 0
    for start in range(0, n, batch):
        keys = [b"%s%d" % (prefix.encode(), i) for i in range(start, min(n, start + batch))]
        values = c.call("MGET", *keys)
        for k, (i, v) in enumerate(zip(range(start, start + len(keys)), values)):
            if v != value_of(i, size):
                if wrong < 5:
                    log(f"  {keys[k].decode()}: {'missing' if v is None else 'wrong value'}")
                wrong += 1
    return wrong


def redis_structures(c, n=20000):
    """Other types than strings, so that the digest covers them: a hash, a
    list, a set and a sorted set per 1000 elements."""
    cmds = []
    for i in range(n):
        g = i // 1000
        cmds.append(("HSET", f"h:{g}", f"f{i}", value_of(i, 64)))
        cmds.append(("RPUSH", f"l:{g}", value_of(i, 32)))
        cmds.append(("SADD", f"s:{g}", f"m{i}"))
        cmds.append(("ZADD", f"z:{g}", i % 977, f"m{i}"))
        if len(cmds) >= 4000:
            for r in c.pipeline(cmds):
                if isinstance(r, RedisError):
                    raise Failure(f"structures: {r}")
            cmds = []
    for r in c.pipeline(cmds):
        if isinstance(r, RedisError):
            raise Failure(f"structures: {r}")


# ---- PostgreSQL (Debian's 15), for the postgres tests ---------------------------

PG_BIN = "/usr/lib/postgresql/15/bin"


def as_postgres(argv):
    """argv run as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *argv]


def pg_cluster(ctx, huge_pages):
    """initdb a cluster under ctx.tmp owned by postgres: (data, sockdir,
    port, server argv with huge_pages= and 128 MB of shared_buffers on a
    free port and only a unix socket, path for the server's log)."""
    pw = pwd.getpwnam("postgres")
    base = os.path.join(ctx.tmp, "pg")
    data, sockdir = os.path.join(base, "data"), os.path.join(base, "run")
    os.makedirs(sockdir)
    for p in (base, sockdir):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    r = hptest.run(as_postgres([f"{PG_BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres"]), timeout=300)
    ctx.require(r.rc == 0, f"initdb (rc {r.rc})" + ("" if r.rc == 0 else r.describe()))
    port = free_port()
    server = [f"{PG_BIN}/postgres", "-D", data, "-c", f"huge_pages={huge_pages}", "-c", "shared_buffers=128MB",
              "-c", f"port={port}", "-c", f"unix_socket_directories={sockdir}", "-c", "listen_addresses="]
    return data, sockdir, port, server, os.path.join(base, "server.log")


def pg_pgbench_checked(ctx, sockdir, port):
    """pgbench with 2 clients for 5 s with no failed transaction, then the
    balances of accounts, tellers and branches equal pgbench_history."""
    pgb = [f"{PG_BIN}/pgbench", "-h", sockdir, "-p", str(port), "-U", "postgres"]
    r = hptest.run(as_postgres([*pgb, "-c", "2", "-j", "2", "-T", "5", "postgres"]), timeout=600)
    ctx.expect(r.rc == 0 and "number of failed transactions: 0" in r.out,
               f"pgbench, 2 clients for 5 s (rc {r.rc})" + ("" if r.rc == 0 else r.describe()))
    q = ("select (select sum(abalance) from pgbench_accounts) = (select coalesce(sum(delta), 0) "
         "from pgbench_history), (select sum(tbalance) from pgbench_tellers) = (select coalesce(sum(delta), 0) "
         "from pgbench_history), (select sum(bbalance) from pgbench_branches) = (select coalesce(sum(delta), 0) "
         "from pgbench_history), (select count(*) from pgbench_history) > 0")
    r = hptest.run(as_postgres(["psql", "-h", sockdir, "-p", str(port), "-U", "postgres", "-AtX", "-c", q,
                                "postgres"]), timeout=120)
    ctx.expect(r.rc == 0 and r.out.strip() == "t|t|t|t",
               f"balances of accounts, tellers and branches equal the history ({r.out.strip()!r})")


def pg_stop(data, proc):
    """Stop the server of data (pg_ctl, fast), then make sure proc is gone."""
    hptest.run(as_postgres([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]), timeout=120)
    if proc.poll() is None:
        hptest.kill_tree(proc)
    proc.wait()


def pg_wait_ready(sockdir, port, proc, timeout=60):
    """Wait until the server started as proc accepts connections: False if
    it exits first or timeout seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        r = hptest.run([f"{PG_BIN}/pg_isready", "-h", sockdir, "-p", str(port)], timeout=30)
        if r.rc == 0:
            return True
        time.sleep(0.2)
    return False
