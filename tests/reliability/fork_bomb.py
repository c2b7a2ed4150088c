#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A fork bomb does not take the daemon down.

The daemon runs with `--group nogroup` and MaxConnectionsPerUser=8. As
nobody:nogroup, capped by `ulimit -u 48`, `hp-fork bomb 8` forks as fast as
it can under hugepaged-run for 8 seconds; every forked child asks the daemon
for a connection of its own. Meanwhile, as root, hp-workload writes and
verifies memory under the same daemon. Properties: the bomb hit its process
cap (failed forks) and the daemon's per-user limit (connections of uid 65534
refused), every bomb process found its memory intact, the root workload was
served (faults_served > 0) with its data intact, and after the bomb the
daemon still serves a new client and exits 0 on SIGTERM.
"""

import os
import re
import shutil

import hptest

NOBODY = ("65534", "65534")
NPROC = 48
MAX_PER_USER = 8
SECONDS = 8


def copy_binaries(ctx, fork_bin):
    """Copies other users can run, in the test's own 0755 directory (the
    build tree may sit where nobody cannot enter)."""
    bindir = os.path.join(ctx.tmp, "bin")
    os.mkdir(bindir, 0o755)
    os.chmod(bindir, 0o755)
    out = {}
    for name, src in (("run", ctx.paths.run), ("preload", ctx.paths.preload), ("fork", fork_bin)):
        dst = os.path.join(bindir, os.path.basename(src))
        shutil.copy2(src, dst)
        os.chmod(dst, 0o755)
        out[name] = dst
    return out


def test(ctx):
    fork_bin = os.environ.get("HP_FORK", "")
    ctx.require(fork_bin and os.access(fork_bin, os.X_OK), f"hp-fork is built (HP_FORK={fork_bin!r})")
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise hptest.Skip("setpriv (util-linux) is not installed")
    ctx.require(bool(ctx.paths.preload), "HUGEPAGED_PRELOAD is set")
    bins = copy_binaries(ctx, fork_bin)

    d = hptest.Daemon(ctx, ["--group", "nogroup"], "hugepaged")
    with open(d.config, "w") as f:
        f.write(f"[Budgets]\nMaxConnectionsPerUser={MAX_PER_USER}\n")
    ctx.daemons.append(d)
    d.start()

    env = dict(os.environ, HUGEPAGED_PRELOAD=bins["preload"])
    bomb = [setpriv, f"--reuid={NOBODY[0]}", f"--regid={NOBODY[1]}", "--clear-groups", "--",
            "/bin/bash", "-c", f'ulimit -u {NPROC} && exec "$@"', "bash",
            bins["run"], "--socket", d.socket, "--", bins["fork"], "bomb", str(SECONDS)]
    out_path = os.path.join(ctx.tmp, "bomb.out")
    err_path = os.path.join(ctx.tmp, "bomb.err")
    hptest.log("$ " + " ".join(bomb))
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = hptest.spawn(bomb, stdout=out, stderr=err, env=env)

    # Root's program during the bomb.
    r = hptest.run(ctx.managed(d.socket, ["--wait", "0", "dense-rand", "128M"]), timeout=120)
    ctx.expect(r.rc == 0 and r.int("mismatches") == 0,
               f"a root program during the bomb: exit 0, data intact (exit {r.rc}, {r.kv.get('mismatches')} "
               f"mismatches){'' if r.rc == 0 else r.describe()}")
    s = d.client_stats(r.int("pid"))
    ctx.expect(s is not None and s.get("faults_served", 0) > 0,
               f"the daemon served the root program during the bomb ({s and s.get('faults_served')} faults)")

    try:
        p.wait(timeout=SECONDS + 120)
    except Exception:
        hptest.kill_tree(p)
        ctx.require(False, f"the fork bomb ended within {SECONDS + 120} s")
    hptest.kill_tree(p)     # anything of the group still ending
    with open(out_path) as f, open(err_path) as e:
        res = hptest.Result(bomb, p.returncode, f.read(), e.read())
    ctx.expect(p.returncode == 0 and res.int("mismatches") == 0,
               f"every bomb process found its memory intact (exit {p.returncode}, {res.kv.get('mismatches')} "
               f"mismatches){'' if p.returncode == 0 else res.describe()}")
    # up to its limit at least: how many more it gets depends on how soon
    # the exited ones are reaped (zombies count against ulimit -u)
    ctx.expect(res.int("forks") >= NPROC // 2, f"the bomb forked ({res.kv.get('forks')} forks)")
    ctx.expect(res.int("fork_failures") > 0, f"the bomb hit ulimit -u {NPROC} ({res.kv.get('fork_failures')} "
                                             "failed forks)")
    log = d.log()
    ctx.expect(re.search(r"too many connections of uid 65534", log) is not None,
               f"the daemon refused connections of uid 65534 past MaxConnectionsPerUser={MAX_PER_USER}")
    managed = len(re.findall(r"client \d+ \(hp-fork\): forked from client", log))
    ctx.expect(managed > 0, f"bomb children within the limit were clients ({managed})")

    ctx.require(d.alive(), "the daemon is alive after the bomb")
    r = hptest.run(ctx.managed(d.socket, ["--wait", "0", "sparse", "256M"]), timeout=120)
    s = d.client_stats(r.int("pid")) if r.rc == 0 else None
    ctx.expect(r.rc == 0 and s is not None and s.get("faults_served", 0) > 0,
               f"after the bomb a new program is served (exit {r.rc}, stats {s})")


if __name__ == "__main__":
    hptest.main(test)
