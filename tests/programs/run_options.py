#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""hugepaged-run: its options reach the shim, its exit status is the command's.

- --help lists every option and the environment it mirrors, and exits 0;
  bad options and values exit 2 and say what is wrong.
- The exit status is the command's, managed or not: exit codes, death by a
  signal, 127 for a command not found, 126 for one that cannot run.
- --threshold: 32 pages touched per 2 MiB region are promoted with
  --threshold 16 and are not with --threshold 64.
- --min-size: a 32 MiB mapping is managed with --min-size 16M and is not
  with --min-size 64M.
- --debug: the shim says, per process, that it is managed; without it, no
  word from the shim.
"""

import os
import signal

import progtest
from progtest import hptest


def run(ctx, argv, label, timeout=300):
    r = hptest.run(argv, timeout=timeout)
    return r


def test(ctx):
    d = ctx.daemon()
    hrun = ctx.paths.run

    r = run(ctx, [hrun, "--help"], "help")
    ctx.expect(r.rc == 0, f"--help exits 0 (got {r.rc})")
    for word in ("--socket", "--threshold", "--min-size", "--debug", "--help", "--version",
                 "HUGEPAGED_SOCKET", "HUGEPAGED_THRESHOLD", "HUGEPAGED_MIN_SIZE", "HUGEPAGED_DEBUG",
                 "Exit status"):
        ctx.expect(word in r.out, f"--help mentions {word}")

    for args, why in ((["--threshold", "0", "true"], "threshold 0"),
                      (["--threshold", "513", "true"], "threshold 513"),
                      (["--min-size", "2X", "true"], "min-size 2X"),
                      (["--min-size", "0", "true"], "min-size 0"),
                      (["--no-such-option", "true"], "unknown option"),
                      ([], "no command")):
        r = run(ctx, [hrun, *args], why)
        ctx.expect(r.rc == 2 and r.err.strip() and "--help" in r.err,
                   f"{why}: exit status 2 with a message (got {r.rc}: {r.err.strip()[:100]})")

    # exit status, managed (daemon up) and unmanaged (no daemon at that socket)
    nowhere = os.path.join(ctx.tmp, "nobody.sock")
    for sock, label in ((d.socket, "managed"), (nowhere, "unmanaged")):
        base = [hrun, "--socket", sock, "--"]
        r = run(ctx, [*base, "sh", "-c", "exit 42"], label)
        ctx.expect(r.rc == 42, f"{label}: exit 42 comes back as 42 (got {r.rc})")
        r = run(ctx, [*base, "sh", "-c", "kill -USR1 $$"], label)
        ctx.expect(r.rc == -signal.SIGUSR1, f"{label}: death by SIGUSR1 comes back as such (got {r.rc})")
        r = run(ctx, [*base, "/nonexistent/command"], label)
        ctx.expect(r.rc == 127 and "nonexistent" in r.err, f"{label}: a command not found gives 127 (got {r.rc})")
        r = run(ctx, [*base, ctx.tmp], label)
        ctx.expect(r.rc == 126, f"{label}: a command that cannot run gives 126 (got {r.rc})")

    # --threshold reaches the daemon
    promotions = {}
    for t in (16, 64):
        r = run(ctx, ctx.managed(d.socket, ["--per-region", "32", "sparse", "64M"], ["--threshold", str(t)]),
                f"threshold {t}")
        ctx.require(r.rc == 0 and r.int("mismatches") == 0,
                    f"--threshold {t}: workload passes{'' if r.rc == 0 else r.describe()}")
        stats = d.client_stats(r.int("pid"))
        ctx.require(stats is not None, f"--threshold {t}: daemon logged the client")
        promotions[t] = stats.get("promotions", 0)
    ctx.expect(promotions[16] > 0 and promotions[64] == 0,
               f"--threshold: 32 pages per region promoted at 16, not at 64 "
               f"(promotions {promotions[16]} and {promotions[64]})")

    # --min-size decides which mappings are managed
    faults = {}
    for m in ("16M", "64M"):
        r = run(ctx, ctx.managed(d.socket, ["sparse", "32M"], ["--min-size", m]), f"min-size {m}")
        ctx.require(r.rc == 0 and r.int("mismatches") == 0,
                    f"--min-size {m}: workload passes{'' if r.rc == 0 else r.describe()}")
        stats = d.client_stats(r.int("pid"))
        ctx.require(stats is not None, f"--min-size {m}: daemon logged the client")
        faults[m] = stats.get("faults_served", 0)
    ctx.expect(faults["16M"] > 0 and faults["64M"] == 0,
               f"--min-size: a 32 MiB mapping is managed at 16M, not at 64M "
               f"(faults_served {faults['16M']} and {faults['64M']})")

    # --debug
    r = run(ctx, [hrun, "--socket", d.socket, "--debug", "--", "sh", "-c", "true"], "debug")
    ctx.expect("(sh): managed by" in r.err, f"--debug: the shim says the command is managed ({r.err.strip()[:200]})")
    r = run(ctx, [hrun, "--socket", d.socket, "--", "sh", "-c", "true"], "no debug")
    ctx.expect(r.err.strip() == "", f"without --debug nothing is printed ({r.err.strip()[:200]})")


if __name__ == "__main__":
    hptest.main(test)
