#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Debian's redis-server (jemalloc), unmodified, under hugepaged-run.

The same commands run against a redis-server under the shim and one
without: a data set of 1.1 million 1000-byte strings (over 1 GiB of
used_memory) plus hashes, lists, sets and sorted sets, then redis-benchmark
(tests whose final state does not depend on timing). Properties:
- every key reads back with the value it was given, under the shim;
- DEBUG DIGEST under the shim equals the digest without it;
- BGSAVE (fork) under the shim completes, the forked child is a client of
  its own that took over the server's ranges, and the RDB it wrote loads into a fresh server with the same
  digest (and passes redis-check-rdb);
- the daemon served redis-server's faults and promoted its memory; the shim
  left jemalloc in charge (INFO: mem_allocator).
Rss, AnonHugePages and throughput (load, redis-benchmark) of both servers are
reported, never judged.
"""

import os
import re
import shutil
import time

import progtest
from progtest import GiB, Redis, RedisServer, hptest, log, mib

KEYS = 1_100_000
VALUE = 1000
# Final state independent of timing and of the number of clients: SETs of
# one key, INCR counts, pushes matched by as many pops.
BENCH_TESTS = "set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,mset"
BENCH_REQUESTS = 100_000


def benchmark(port):
    argv = [progtest.require_program("/usr/bin/redis-benchmark", "redis-tools"), "-h", "127.0.0.1",
            "-p", str(port), "-c", "20", "-n", str(BENCH_REQUESTS), "-d", "64", "-t", BENCH_TESTS, "--csv"]
    r = hptest.run(argv, timeout=900)
    if r.rc != 0:
        raise hptest.Failure(f"redis-benchmark failed:{r.describe()}")
    rps = {}
    for line in r.out.splitlines():
        m = re.match(r'^"([A-Z_]+)[^"]*","([0-9.]+)"', line)
        if m:
            rps[m.group(1)] = float(m.group(2))
    return rps, r


def session(ctx, d, name, shim):
    prefix = [ctx.paths.run, "--socket", d.socket, "--debug", "--"] if shim else []
    srv = RedisServer(ctx, name, prefix).start()
    c = srv.client()
    out = {"srv": srv}
    t0 = time.monotonic()
    progtest.redis_load(c, KEYS, VALUE)
    progtest.redis_structures(c)
    out["load_s"] = time.monotonic() - t0
    out["bench"], _ = benchmark(srv.port)
    t0 = time.monotonic()
    out["wrong"] = progtest.redis_verify(c, KEYS, VALUE)
    out["verify_s"] = time.monotonic() - t0
    out["digest"] = c.call("DEBUG", "DIGEST").decode()
    out["dbsize"] = c.call("DBSIZE")
    info = c.info("memory")
    out["used_memory"] = int(info["used_memory"])
    out["allocator"] = info.get("mem_allocator", "?")
    out["mem"] = progtest.memory(srv.pid)
    out["client"] = c
    log(f"{name}: {out['dbsize']} keys, used_memory {mib(out['used_memory'])}, Rss {mib(out['mem']['Rss'])}, "
        f"AnonHugePages {mib(out['mem']['AnonHugePages'])}, digest {out['digest']}, "
        f"load {out['load_s']:.1f} s, verify {out['verify_s']:.1f} s, allocator {out['allocator']}")
    return out


def bgsave(ctx, d, s):
    """BGSAVE under the shim; returns the RDB's path."""
    c, srv = s["client"], s["srv"]
    before = int(c.info("persistence").get("rdb_last_bgsave_time_sec", "-1") or -1)
    reply = c.call("BGSAVE")
    ctx.require(b"started" in reply.lower(), f"BGSAVE started ({reply!r})")
    info = progtest.wait_until(
        lambda: (i := c.info("persistence")).get("rdb_bgsave_in_progress") == "0" and i,
        600, "BGSAVE finishes", step=0.2)
    ctx.expect(info.get("rdb_last_bgsave_status") == "ok",
               f"BGSAVE under the shim completed (status {info.get('rdb_last_bgsave_status')}, "
               f"{info.get('rdb_last_bgsave_time_sec')} s, before {before})")
    m = re.search(r"Background saving started by pid (\d+)", srv.log())
    ctx.require(m is not None, "redis logged the pid of its BGSAVE child")
    child = int(m.group(1))
    ctx.expect(re.search(rf"client {child} \(.*\): forked from client {srv.pid}, inherited [1-9]", d.log()) is not None
               and d.client_stats(child) is not None,
               f"the BGSAVE child {child} (fork without exec) was a client of its own with its parent's ranges")
    rdb = os.path.join(srv.dir, "dump.rdb")
    ctx.require(os.path.exists(rdb) and os.path.getsize(rdb) > 0,
                f"BGSAVE wrote {rdb} ({mib(os.path.getsize(rdb)) if os.path.exists(rdb) else 'missing'})")
    return rdb


def load_rdb(ctx, rdb, digest, dbsize):
    check = shutil.which("redis-check-rdb")
    if check:
        r = hptest.run([check, rdb], timeout=600)
        ctx.expect(r.rc == 0 and "RDB looks OK" in r.out + r.err,
                   f"redis-check-rdb: the RDB looks OK{'' if r.rc == 0 else r.describe()}")
    srv = RedisServer(ctx, "loaded")
    os.rename(rdb, os.path.join(srv.dir, "dump.rdb"))
    srv.start(timeout=600)
    c = srv.client()
    got = c.call("DEBUG", "DIGEST").decode()
    n = c.call("DBSIZE")
    ctx.expect(got == digest and n == dbsize,
               f"the RDB written under the shim loads into a fresh server with the same digest "
               f"({got} vs {digest}, {n} vs {dbsize} keys)")
    c.close()
    srv.stop()


def test(ctx):
    progtest.require_program("/usr/bin/redis-server", "redis-server")
    progtest.require_program("/usr/bin/redis-benchmark", "redis-tools")
    d = ctx.daemon()

    s = session(ctx, d, "shim", True)
    ctx.expect(s["wrong"] == 0, f"shim: all {KEYS} keys read back correctly ({s['wrong']} wrong)")
    ctx.expect(s["used_memory"] >= GiB, f"shim: the data set is over 1 GiB (used_memory {mib(s['used_memory'])})")
    ctx.expect(s["allocator"].startswith("jemalloc"), f"shim: redis still allocates with jemalloc ({s['allocator']})")
    ctx.expect(s["mem"]["AnonHugePages"] > 0,
               f"shim: redis-server's memory got huge pages (AnonHugePages {mib(s['mem']['AnonHugePages'])})")
    ctx.expect("not managed" not in s["srv"].log(), "shim: hugepaged-run did not report 'not managed'")
    rdb = bgsave(ctx, d, s)
    s["client"].close()
    s["srv"].stop()
    stats = d.client_stats(s["srv"].pid)
    ctx.require(stats is not None, f"daemon logged 'client {s['srv'].pid} ... gone'")
    ctx.expect(stats.get("faults_served", 0) > 0 and stats.get("promotions", 0) > 0,
               f"the daemon served and promoted redis-server's memory (faults_served="
               f"{stats.get('faults_served')}, promotions={stats.get('promotions')}, "
               f"promotions_failed={stats.get('promotions_failed')})")
    load_rdb(ctx, rdb, s["digest"], s["dbsize"])

    p = session(ctx, d, "plain", False)
    p["client"].close()
    p["srv"].stop()
    ctx.expect(p["wrong"] == 0, f"plain: all {KEYS} keys read back correctly ({p['wrong']} wrong)")
    ctx.expect(s["digest"] == p["digest"] and s["dbsize"] == p["dbsize"],
               f"DEBUG DIGEST under the shim equals the run without it ({s['digest']} vs {p['digest']}; "
               f"{s['dbsize']} vs {p['dbsize']} keys)")

    bench = ", ".join(f"{t} {s['bench'].get(t, 0):.0f}/{p['bench'].get(t, 0):.0f}"
                      for t in ("SET", "GET", "INCR", "LPUSH", "LPOP", "SADD", "HSET", "ZADD", "MSET"))
    log(f"numbers: redis-server {KEYS} x {VALUE} B: shim Rss {mib(s['mem']['Rss'])} AnonHugePages "
        f"{mib(s['mem']['AnonHugePages'])}, plain Rss {mib(p['mem']['Rss'])} AnonHugePages "
        f"{mib(p['mem']['AnonHugePages'])}; load {KEYS / s['load_s']:.0f}/{KEYS / p['load_s']:.0f} keys/s, "
        f"MGET verify {s['verify_s']:.1f}/{p['verify_s']:.1f} s; redis-benchmark rps shim/plain: {bench}")


if __name__ == "__main__":
    hptest.main(test)
