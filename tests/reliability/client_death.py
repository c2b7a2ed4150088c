#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Client death: the daemon frees everything a client had, however the
client ends.

hp-lifecycle runs short client lives, four at a time, cycling through:
a complete life (handshake, register, fault, promote, verify, exit) and
SIGKILL right after connect, after hello, holding the device fd, holding its
new uffd, right after sending it, mid-registration, mid-fault (4 threads
faulting), mid-promotion (a collapse queued or running), plus exit with
everything open and closing the connection early. After a warm-up of 220
lives, the daemon's open fds and resident memory are sampled; after 2000
more (and once every client is gone and no promotion is in flight) they are
sampled again. The fd count must be exactly what it was; resident memory
may grow by less than 2 MiB (allocator slack; it stays flat in practice).
"""

import os

import hptest
import sectest

WARMUP = 220
LIVES = 2000
RSS_SLACK_KIB = 2048
GONE = r"\bgone\b"


def lives(ctx, d, n, seed, total):
    r = hptest.run([os.environ["HP_LIFECYCLE"], "--socket", d.socket, str(n), "4", str(seed)], timeout=600)
    ctx.expect(r.rc == 0 and r.int("unexpected") == 0,
               f"{n} client lives ended as planned ({r.kv.get('unexpected')} unexpected)"
               f"{'' if r.rc == 0 else r.describe()}")
    got = sectest.wait_lines(d, GONE, total, timeout=60)
    ctx.require(got >= total, f"the daemon saw all {total} connections end ({got})")
    return r


def test(ctx):
    d = sectest.start_daemon(ctx)
    fds_start = sectest.fd_count(d.pid)
    lives(ctx, d, WARMUP, 1, WARMUP)
    fds0 = sectest.settle_fds(d.pid, fds_start)
    rss0 = sectest.rss_kib(d.pid)
    ctx.expect(fds0 == fds_start, f"after the warm-up: {fds0} fds, as at start ({fds_start})")
    hptest.log(f"baseline after {WARMUP} lives: {fds0} fds, VmRSS {rss0} KiB")

    r = lives(ctx, d, LIVES, 2, WARMUP + LIVES)
    hptest.log("stages: " + ", ".join(f"{k[6:]}={v}" for k, v in r.kv.items() if k.startswith("stage_")))
    fds1 = sectest.settle_fds(d.pid, fds0)
    rss1 = sectest.rss_kib(d.pid)
    hptest.log(f"after {LIVES} more lives: {fds1} fds, VmRSS {rss1} KiB")
    ctx.expect(fds1 == fds0, f"fd delta over {LIVES} client lives: {fds1 - fds0} (want 0)")
    if os.environ.get("HP_SANITIZE"):
        hptest.log(f"VmRSS delta {rss1 - rss0} KiB not checked: the sanitizer's quarantine holds freed memory "
                   "(its leak checker covers this run)")
    else:
        ctx.expect(rss1 - rss0 < RSS_SLACK_KIB,
                   f"VmRSS delta over {LIVES} client lives: {rss1 - rss0} KiB (want < {RSS_SLACK_KIB} KiB)")
    errors = sectest.daemon_errors(d)
    ctx.expect(not errors, f"the daemon logged no errors ({errors[:3]})")


if __name__ == "__main__":
    hptest.main(test)
