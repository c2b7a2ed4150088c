#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hostile clients: every one gets a clear error or is disconnected, the
daemon survives them all, holds nothing afterwards, and serves a
well-behaved client meanwhile.

tests/security/hp-hostile does the hostile part:
  battery      every malformed message (truncated, oversized, bad magic,
               version, type, length), every wrong fd where the uffd is
               expected (none, pipe, file, directory, /dev/null, socket,
               eventfd, memfd, the device itself, a uffd already set up, one
               already in use, one made by another process), every bad range
               (unmapped, overlapping, misaligned, null, kernel, wrapping,
               above user space, file-backed, shared, stack, vdso, another
               process's memory), too many ranges, a peer that exited before
               its hello, forged credentials: each case states the error it
               must get (or that it must be disconnected) and fails if not;
  random       random packets, half of them with a valid header;
  silent       connections that never finish the handshake: dropped after
               HandshakeTimeoutSec;
  connections  10,000 connections at once from one (unprivileged) user:
               MaxConnectionsPerUser are held, the rest refused at once, the
               held ones dropped at the handshake timeout;
  flood        pipelined register requests (answered at no more than
               MaxRequestsPerSecond), a client that never reads its replies
               (disconnected), garbage, connection churn.
While the floods and the 10,000 connections run, a well-behaved client
loops: connect, handshake, register 16 MiB, write, verify. The bound stated
for it: every handshake answered within 5 s and every cycle done within
15 s (both usually take milliseconds), with its data intact.
Afterwards the daemon has exactly the fds it had before.
"""

import os
import time

import hptest
import sectest

RATE = 500
PER_USER = 64
TIMEOUT_S = 2
CONF = f"""[Budgets]
MaxRangesPerClient=16
MaxConnectionsPerUser={PER_USER}
HandshakeTimeoutSec={TIMEOUT_S}
MaxRequestsPerSecond={RATE}
"""
HANDSHAKE_BOUND_MS = 5000
CYCLE_BOUND_MS = 15000
FLOOD_S = 3


def hostile(ctx, *args):
    return [os.environ["HP_HOSTILE"], "--socket", ctx.sock, *args]


def test(ctx):
    d = sectest.start_daemon(ctx, conf=CONF)
    ctx.sock = d.socket
    # one well-behaved client first: whatever it allocates once stays
    r = hptest.run(hostile(ctx, "probe", "0"), timeout=60)
    ctx.require(r.rc == 0, f"a well-behaved client is served{r.describe() if r.rc else ''}")
    time.sleep(0.5)
    fds0, rss0 = sectest.fd_count(d.pid), sectest.rss_kib(d.pid)
    hptest.log(f"daemon: {fds0} fds, VmRSS {rss0} KiB")

    r = hptest.run(hostile(ctx, "battery"), timeout=300)
    hptest.log(r.out)
    ctx.expect(r.rc == 0 and r.int("failed") == 0,
               f"battery: every one of {r.kv.get('cases')} hostile cases got its error or was disconnected")
    forged = r.kv.get("forged_pid_served")
    ctx.expect(forged is not None and sectest.count_lines(d, rf"\bclient {forged} .*ready") >= 1
               and sectest.count_lines(d, r"\bclient 1\b") == 0,
               f"forged SCM_CREDENTIALS: the daemon knows the client as pid {forged}, never as pid 1")

    r = hptest.run(hostile(ctx, "--seed", "7", "random", "3000"), timeout=300)
    ctx.expect(r.rc == 0 and r.int("unanswered") == 0,
               f"3000 random packets: each answered or disconnected ({r.kv.get('replies')} replies, "
               f"{r.kv.get('errors')} errors, {r.kv.get('disconnects')} disconnects)")

    for mode in ("connect", "hello"):
        r = hptest.run(hostile(ctx, "silent", mode), timeout=60)
        ms = float(r.kv.get("closed_after_ms", "inf"))
        ctx.expect(r.rc == 0 and r.kv.get("status") == "ETIMEDOUT" and TIMEOUT_S * 1000 - 100 <= ms <= TIMEOUT_S * 1000 + 3000,
                   f"silent after {mode}: told ETIMEDOUT and dropped after {ms:.0f} ms "
                   f"(HandshakeTimeoutSec={TIMEOUT_S}): {r.kv.get('text')}")

    # The abuse, all while a well-behaved client keeps working.
    probe_s = 6 * FLOOD_S + 6
    probe_argv = hostile(ctx, "probe", str(probe_s))
    probe_out = os.path.join(ctx.tmp, "probe.out")
    probe = sectest.run_bg(probe_argv, probe_out)

    r = hptest.run(hostile(ctx, "--uid", "65534", "connections", "10000"), timeout=300)
    held, refused = r.int("held"), r.int("refused")
    ctx.expect(r.int("opened") == 10000 and held <= PER_USER and held + refused == 10000,
               f"10000 connections of one user: {held} held (MaxConnectionsPerUser={PER_USER}), "
               f"{refused} refused at once ({r.kv.get('refusal')})")
    ctx.expect(r.int("dropped") == held and r.int("dropped_within_ms") <= TIMEOUT_S * 1000 + 3000,
               f"the {held} held connections never said hello: all dropped within "
               f"{r.kv.get('dropped_within_ms')} ms of the check")

    r = hptest.run(hostile(ctx, "flood", "register", str(FLOOD_S)), timeout=120)
    secs, answered = r.float("seconds"), r.int("replies") + r.int("errors")
    bound = RATE * (secs + 1) * 1.1 + 50      # the rate plus a one-second burst
    ctx.expect(answered > 0 and answered <= bound,
               f"pipelined register requests: {answered} answered in {secs:.1f} s "
               f"({r.kv.get('answered_per_s')}/s; MaxRequestsPerSecond={RATE}, at most {bound:.0f})")
    r = hptest.run(hostile(ctx, "flood", "noread", str(FLOOD_S)), timeout=120)
    ctx.expect(r.int("disconnected") == 1,
               f"a client that never reads its replies is disconnected (after {r.kv.get('sent')} requests)")
    r = hptest.run(hostile(ctx, "--seed", "3", "flood", "garbage", str(FLOOD_S)), timeout=120)
    ctx.expect(r.int("errors") > 0 and r.int("replies") == 0,
               f"garbage flood: {r.kv.get('errors')} errors, each answered in turn, rate-limited "
               f"({r.kv.get('answered_per_s')}/s)")
    r = hptest.run(hostile(ctx, "flood", "connect", str(FLOOD_S)), timeout=120)
    ctx.expect(r.int("connections") > 0, f"connection churn: {r.kv.get('connections')} connect/hello/close")

    r = sectest.finish_bg(probe, probe_argv, probe_out, probe_s + 120)
    ctx.expect(r.rc == 0 and r.int("failures") == 0 and r.int("mismatches") == 0 and r.int("cycles") > 0,
               f"the well-behaved client was served throughout: {r.kv.get('cycles')} cycles, "
               f"{r.kv.get('failures')} failures, {r.kv.get('mismatches')} mismatches")
    ctx.expect(r.float("worst_handshake_ms") < HANDSHAKE_BOUND_MS,
               f"its slowest handshake under abuse: {r.kv.get('worst_handshake_ms')} ms "
               f"(bound {HANDSHAKE_BOUND_MS} ms)")
    ctx.expect(r.float("worst_cycle_ms") < CYCLE_BOUND_MS,
               f"its slowest connect+register+write+verify of 16 MiB: {r.kv.get('worst_cycle_ms')} ms "
               f"(bound {CYCLE_BOUND_MS} ms)")

    ctx.require(d.alive(), "the daemon survived every hostile client")
    fds1 = sectest.settle_fds(d.pid, fds0)
    rss1 = sectest.rss_kib(d.pid)
    ctx.expect(fds1 == fds0, f"daemon fds after all hostile clients: {fds1} (before: {fds0})")
    hptest.log(f"daemon VmRSS: {rss0} KiB before, {rss1} KiB after")
    errors = sectest.daemon_errors(d)
    ctx.expect(not errors, f"the daemon logged no errors ({errors[:3]})")


if __name__ == "__main__":
    hptest.main(test)
