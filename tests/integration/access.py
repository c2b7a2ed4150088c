#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Access control: the daemon serves only root and members of its group.

The daemon runs with `--group nogroup`. The workload runs under hugepaged-run
as two unprivileged users, without creating any user or group:
  - nobody:nogroup (65534:65534): inside the group, must be served
    (the daemon's log shows faults_served > 0 for it);
  - 65533:65533, no supplementary groups: must be refused (hugepaged-run says
    `not managed`, the daemon's log names the refusal), and must still run
    correctly, unmanaged.
"""

import os
import re
import shutil

import hptest

INSIDE = ("65534", "65534")
OUTSIDE = ("65533", "65533")
REFUSAL = re.compile(r"refus|denied|deny|reject|not allowed|not permitted|permission|EACCES|forbidden", re.I)


def as_user(setpriv, ids, argv):
    uid, gid = ids
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]


def check_reachable(ctx, setpriv, ids):
    files = [ctx.paths.run, ctx.paths.workload]
    script = 'for f in "$@"; do test -x "$f" || { echo "cannot execute $f"; exit 1; }; done'
    if ctx.paths.preload:
        script += f'; test -r "{ctx.paths.preload}" || {{ echo "cannot read {ctx.paths.preload}"; exit 1; }}'
    script += f'; test -x "{ctx.tmp}" || {{ echo "cannot enter {ctx.tmp}"; exit 1; }}'
    r = hptest.run(as_user(setpriv, ids, ["/bin/sh", "-c", script, "sh", *files]), timeout=30)
    if r.rc != 0:
        raise hptest.Skip(f"uid {ids[0]} cannot use the build tree ({(r.out + r.err).strip()}); "
                          "build in a directory readable by all users (e.g. chmod o+rx on its parents)")


def copy_binaries(ctx):
    """The build tree may sit in a directory other users cannot enter (a CI
    clone under /root): give them copies in the test's own 0755 directory."""
    bindir = os.path.join(ctx.tmp, "bin")
    os.mkdir(bindir, 0o755)
    os.chmod(bindir, 0o755)
    for attr in ("run", "workload", "preload"):
        src = getattr(ctx.paths, attr)
        if not src:
            continue
        dst = os.path.join(bindir, os.path.basename(src))
        shutil.copy2(src, dst)
        os.chmod(dst, 0o755)
        setattr(ctx.paths, attr, dst)
    if ctx.paths.preload:
        os.environ["HUGEPAGED_PRELOAD"] = ctx.paths.preload


def test(ctx):
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise hptest.Skip("setpriv (util-linux) is not installed")
    copy_binaries(ctx)
    for ids in (INSIDE, OUTSIDE):
        check_reachable(ctx, setpriv, ids)

    d = ctx.daemon("--group", "nogroup")
    work = ["--wait", "30", "dense-seq", "256M"]
    # unmanaged memory never turns huge here (THP "madvise" mode): do not wait for it
    work_refused = ["--wait", "0", "dense-seq", "256M"]

    # inside the group: served
    r = hptest.run(as_user(setpriv, INSIDE, ctx.managed(d.socket, work, ["--debug"])), timeout=300)
    ctx.expect(r.rc == 0, f"nobody:nogroup: workload exits 0 (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    ctx.expect(r.int("mismatches") == 0, f"nobody:nogroup: data intact ({r.kv['mismatches']} mismatches)")
    ctx.expect("not managed" not in r.err, "nobody:nogroup: hugepaged-run did not report 'not managed'")
    stats = d.client_stats(r.int("pid"))
    ctx.expect(stats is not None and stats.get("faults_served", 0) > 0,
               f"nobody:nogroup: daemon served faults for it ({stats})")

    # outside the group: refused, still runs, unmanaged
    log_before = len(d.log())
    r = hptest.run(as_user(setpriv, OUTSIDE, ctx.managed(d.socket, work_refused, ["--debug"])), timeout=300)
    pid = r.int("pid")
    ctx.expect(r.rc == 0, f"uid 65533: workload exits 0 (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    ctx.expect(r.int("mismatches") == 0, f"uid 65533: data intact ({r.kv['mismatches']} mismatches)")
    ctx.expect(re.search(r"^hugepaged-run: not managed: .+", r.err, re.M) is not None,
               "uid 65533: hugepaged-run printed 'hugepaged-run: not managed: <reason>'")
    new_log = d.log()[log_before:]
    refusals = [l for l in new_log.splitlines()
                if REFUSAL.search(l) and re.search(rf"(?<![0-9])(65533|{pid})(?![0-9])", l)]
    for l in refusals:
        hptest.log(f"  daemon: {l.strip()}")
    ctx.expect(bool(refusals), "uid 65533: daemon log names the refusal (uid 65533 or its pid)")
    stats = d.client_stats(pid, timeout=2)
    ctx.expect(stats is None or stats.get("faults_served", 0) == 0,
               f"uid 65533: daemon served no faults for it ({stats})")


if __name__ == "__main__":
    hptest.main(test)
