#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""With no daemon, the shim costs one failed connect at start and nothing
per call afterwards.

`shim-check churn N` runs N rounds of mmap/mremap/munmap and
malloc/calloc/realloc/free; strace counts its system calls without the shim
and with LD_PRELOAD of the shim and no daemon behind HUGEPAGED_SOCKET, for
two values of N. Properties:
- the shim's extra system calls are the same for N = 50 and N = 500: not one
  per call (loading the library and one connection attempt only);
- among them exactly one connect(2), and it failed; nothing was sent;
- every system call the program makes itself (mmap, munmap, mremap, brk, ...)
  happens as often as without the shim, apart from loading the library.
Also python3 -c pass: the same comparison for a real program's start-up.
"""

import os
import shutil

import progtest
from progtest import hptest, log


def syscalls(ctx, argv, env, label):
    out = os.path.join(ctx.tmp, f"{label}.strace")
    r = hptest.run([shutil.which("strace"), "-f", "-c", "-U", "name,calls,errors", "-o", out, *argv],
                   timeout=600, env=env)
    ctx.require(r.rc == 0, f"{label}: exits 0 under strace (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    calls, errors = {}, {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit() and parts[0] != "total":
                calls[parts[0]] = int(parts[1])
                errors[parts[0]] = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    return calls, errors


def diff(a, b):
    return {k: a.get(k, 0) - b.get(k, 0) for k in sorted(set(a) | set(b)) if a.get(k, 0) != b.get(k, 0)}


def test(ctx):
    if not shutil.which("strace"):
        raise hptest.Skip("strace is not installed (Debian package strace; ./test.sh installs it)")
    check = os.environ.get("HP_SHIM_CHECK", "")
    if not check or not os.access(check, os.X_OK):
        raise hptest.Failure("HP_SHIM_CHECK is not set or not built; run with `meson test`")

    plain_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "HUGEPAGED_SOCKET")}
    shim_env = dict(plain_env, LD_PRELOAD=ctx.paths.preload,
                    HUGEPAGED_SOCKET=os.path.join(ctx.tmp, "no-daemon.sock"))
    extra = {}
    for n in (50, 500):
        plain, _ = syscalls(ctx, [check, "churn", str(n)], plain_env, f"plain-{n}")
        shim, shim_err = syscalls(ctx, [check, "churn", str(n)], shim_env, f"shim-{n}")
        extra[n] = diff(shim, plain)
        log(f"churn {n}: {sum(plain.values())} system calls without the shim, {sum(shim.values())} with it; "
            f"extra: {extra[n]}")
        ctx.expect(plain.get("mmap", 0) >= n and plain.get("mremap", 0) >= n,
                   f"churn {n}: the workload really mapped ({plain.get('mmap')} mmap, {plain.get('mremap')} mremap)")
        ctx.expect(shim.get("connect") == 1 and shim_err.get("connect") == 1,
                   f"churn {n}: one connect(2), failed ({shim.get('connect')} calls, {shim_err.get('connect')} errors)")
        ctx.expect(not any(shim.get(k) for k in ("sendmsg", "recvmsg", "sendto", "recvfrom")),
                   f"churn {n}: nothing sent or received")
        for call in ("munmap", "mremap", "brk", "madvise"):
            ctx.expect(shim.get(call, 0) == plain.get(call, 0),
                       f"churn {n}: {call} as often as without the shim ({shim.get(call, 0)} vs {plain.get(call, 0)})")
    ctx.expect(extra[50] == extra[500],
               f"the shim's extra system calls do not grow with the calls it interposes "
               f"({sum(extra[50].values())} for 50 rounds, {sum(extra[500].values())} for 500)")
    # mmap: the library's own segments are the only extra ones
    ctx.expect(0 <= extra[500].get("mmap", 0) <= 8,
               f"mmap: only loading the library adds any ({extra[500].get('mmap', 0)})")

    python = progtest.require_program(progtest.PYTHON, "python3")
    argv = [python, "-c", "b = bytearray(64 << 20); b[-1] = 1; import hashlib; hashlib.sha256(b).digest()"]
    plain, _ = syscalls(ctx, argv, plain_env, "python-plain")
    shim, _ = syscalls(ctx, argv, shim_env, "python-shim")
    d = diff(shim, plain)
    log(f"python3: {sum(plain.values())} system calls without the shim, {sum(shim.values())} with it; extra: {d}")
    ctx.expect(shim.get("connect") == 1 and sum(d.values()) <= 25,
               f"python3 start-up with the shim and no daemon: one connect and at most 25 extra system calls "
               f"({sum(d.values())})")


if __name__ == "__main__":
    hptest.main(test, needs_root=False)
