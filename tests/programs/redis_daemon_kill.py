#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon is killed with SIGKILL while redis-server is under load.

redis-server runs under hugepaged-run with a data set of 600k 1000-byte
strings (managed, partly huge). Then redis-benchmark hammers it from 20
connections while this test keeps writing new keys of its own; a third of the
way through those writes the daemon gets SIGKILL. Properties:
- redis-benchmark completes every request and reports no error;
- every write redis acknowledged, before and after the kill, reads back
  with its value, and so does the whole data set: nothing is lost;
- redis keeps serving afterwards (PING, more writes, a BGSAVE: fork and
  new mappings after the daemon is gone).
"""

import re
import subprocess
import time

import progtest
from progtest import RedisServer, hptest, log, mib

KEYS = 600_000
LATE = 200_000
VALUE = 1000


def test(ctx):
    progtest.require_program("/usr/bin/redis-server", "redis-server")
    bench_bin = progtest.require_program("/usr/bin/redis-benchmark", "redis-tools")
    d = ctx.daemon()
    srv = RedisServer(ctx, "redis", [ctx.paths.run, "--socket", d.socket, "--debug", "--"]).start()
    c = srv.client()
    progtest.redis_load(c, KEYS, VALUE)
    mem = progtest.memory(srv.pid)
    ctx.require(d.log_mentions(srv.pid), f"redis-server (pid {srv.pid}) is a client of the daemon")
    ctx.expect(mem["AnonHugePages"] > 0,
               f"before the kill redis-server's memory is managed and partly huge "
               f"(Rss {mib(mem['Rss'])}, AnonHugePages {mib(mem['AnonHugePages'])})")

    argv = [bench_bin, "-h", "127.0.0.1", "-p", str(srv.port), "-c", "20", "-n", "1500000",
            "-r", "300000", "-d", "512", "-t", "set,get,lpush,lpop", "--csv"]
    out_path, err_path = f"{ctx.tmp}/bench.out", f"{ctx.tmp}/bench.err"
    log("$ " + " ".join(argv) + f" >{out_path} 2>{err_path} &")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        bench = hptest.spawn(argv, stdout=out, stderr=err)
    time.sleep(1.0)

    killed_at = None
    batch = 500
    for start in range(0, LATE, batch):
        if killed_at is None and start >= LATE // 3:
            ctx.require(bench.poll() is None, "redis-benchmark is still running when the daemon is killed")
            log(f"kill -9 {d.proc.pid} (daemon) after {start} late writes")
            d.kill9()
            killed_at = time.monotonic()
        progtest.redis_load(c, min(batch, LATE - start), VALUE, prefix="late:", first=start)
    log(f"{LATE} late writes done, {time.monotonic() - killed_at:.1f} s after the kill")

    try:
        bench.wait(timeout=900)
    except subprocess.TimeoutExpired:
        for line in hptest.group_stacks(srv.pid):
            log("  " + line)
        ctx.require(False, "redis-benchmark finished within 900 s after the daemon was killed")
    with open(out_path, errors="replace") as f:
        out = f.read()
    with open(err_path, errors="replace") as f:
        err = f.read()
    rows = re.findall(r'^"([A-Z_]+)[^"]*","([0-9.]+)"', out, re.M)
    ctx.expect(bench.returncode == 0 and not re.search(r"(?i)error", out + err) and len(rows) == 4,
               f"redis-benchmark completed every test without errors across the kill "
               f"(exit {bench.returncode}: {rows}{'' if bench.returncode == 0 else err[-500:]})")

    ctx.expect(c.call("PING") == b"PONG", "redis-server still answers after the daemon died")
    wrong = progtest.redis_verify(c, KEYS, VALUE)
    ctx.expect(wrong == 0, f"the data set loaded before the kill reads back ({wrong} of {KEYS} wrong)")
    wrong = progtest.redis_verify(c, LATE, VALUE, prefix="late:")
    ctx.expect(wrong == 0, f"every acknowledged write around the kill reads back ({wrong} of {LATE} wrong)")

    # Still a working server: new memory (the daemon is gone, so unmanaged) and fork.
    progtest.redis_load(c, 100_000, VALUE, prefix="after:")
    ctx.expect(progtest.redis_verify(c, 100_000, VALUE, prefix="after:") == 0, "writes after the kill read back")
    ctx.expect(b"started" in c.call("BGSAVE").lower(), "BGSAVE starts after the daemon died")
    info = progtest.wait_until(lambda: (i := c.info("persistence")).get("rdb_bgsave_in_progress") == "0" and i,
                               600, "BGSAVE finishes", step=0.2)
    ctx.expect(info.get("rdb_last_bgsave_status") == "ok", "BGSAVE after the daemon died completed")
    mem = progtest.memory(srv.pid)
    log(f"numbers: redis after the kill: Rss {mib(mem['Rss'])} AnonHugePages {mib(mem['AnonHugePages'])}; "
        f"redis-benchmark rps across the kill: {', '.join(f'{t} {float(v):.0f}' for t, v in rows)}")
    c.close()
    srv.stop()
    ctx.expect(srv.proc.returncode == 0, f"redis-server shut down cleanly (status {srv.proc.returncode})")


if __name__ == "__main__":
    hptest.main(test)
