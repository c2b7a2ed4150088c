#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The hugetlb backend: MAP_HUGETLB memory served by the daemon, which grows
the hugetlb pool for its clients and gives the pages back.

With vm.nr_hugepages at 0 (the original value is put back at the end, even on
failure), a program under hugepaged-run maps MAP_HUGETLB memory, writes a
pattern into every 4 KiB page and verifies it:
- reserved: the mmap succeeds though the pool was empty; HugetlbPages of its
  smaps_rollup equals the size; the daemon put in every page once, some
  ahead of the sequential first touch (those read zero too); after it exits
  the pool is back at 0;
- noreserve: MAP_NORESERVE, and the free pages taken by another mapping
  before the first touch: no SIGBUS, the daemon grew the pool again;
- budget: with HugetlbMaxSize=64M, asking for 128 MiB fails with the errno
  the program gets without the daemon (ENOMEM), and the daemon goes on
  serving a client within the budget;
- backend policy: HUGEPAGED_BACKEND=hugetlb turns an ordinary 2 MiB-multiple
  anonymous mapping into hugetlb memory;
- crash: the pages a daemon killed with SIGKILL added stay in the pool (the
  kernel's doing); the next daemon on the same runtime directory gives them
  back, and leaves the pool alone if someone resized it since.
"""

import atexit
import os
import subprocess
import time

import hptest

NR = "/proc/sys/vm/nr_hugepages"
MiB = 1 << 20


def read_nr():
    with open(NR) as f:
        return int(f.read())


def write_nr(v):
    with open(NR, "w") as f:
        f.write(f"{v}\n")


def wait_nr(want, timeout=60):
    """The pool shrinks on the daemon's pool thread: wait for it (a bound for
    correctness, not a speed target)."""
    end = time.monotonic() + timeout
    while True:
        v = read_nr()
        if v == want or time.monotonic() >= end:
            return v
        time.sleep(0.1)


def program(ctx):
    return os.environ.get("HP_HUGETLB", "")


def under_shim(ctx, d, args, env_backend=None):
    argv = [ctx.paths.run, "--socket", d.socket, "--debug"]
    if env_backend:
        argv += ["--backend", env_backend]
    return argv + ["--", program(ctx), *args]


def reserved(ctx, d):
    size = 64 * MiB
    r = hptest.run(under_shim(ctx, d, [f"{size // MiB}M"]), timeout=300)
    ctx.require(r.rc == 0, f"reserved: program exits 0 with the pool empty at start (got {r.rc})"
                + ("" if r.rc == 0 else r.describe()))
    ctx.expect(r.int("mismatches") == 0, f"reserved: every page intact ({r.kv.get('mismatches')} mismatches)")
    ctx.expect(r.int("hugetlb_bytes") == size,
               f"reserved: HugetlbPages of smaps_rollup {r.int('hugetlb_bytes')} == {size}")
    stats = d.client_stats(r.int("pid"))
    ctx.require(stats is not None, "reserved: the daemon logged the client's end")
    # Each page once: copied at its fault, or ahead of the program's
    # sequential stream by a fill thread (then there is no fault at all).
    served, filled = stats.get("hugetlb_faults", 0), stats.get("hugetlb_prefilled", 0)
    ctx.expect(served + filled == size // (2 * MiB),
               f"reserved: the daemon put in every page once ({served} at faults + {filled} filled ahead "
               f"== {size // (2 * MiB)})")
    ctx.expect(filled > 0, f"reserved: pages of the sequential first touch were filled ahead ({filled})")
    ctx.expect(wait_nr(0) == 0, f"reserved: pool back to 0 pages after the program (nr_hugepages={read_nr()})")


def noreserve(ctx, d):
    size = 32 * MiB
    r = hptest.run(under_shim(ctx, d, ["--noreserve", "--steal", f"{size // MiB}M"]), timeout=300)
    ctx.require(r.rc == 0, f"noreserve: MAP_NORESERVE with the free pages taken: no SIGBUS, exit 0 (got {r.rc})"
                + ("" if r.rc == 0 else r.describe()))
    ctx.expect(r.int("stolen") == size, "noreserve: the other mapping took the free pages first")
    ctx.expect(r.int("mismatches") == 0, f"noreserve: every page intact ({r.kv.get('mismatches')} mismatches)")
    ctx.expect(r.int("hugetlb_bytes") == 2 * size,
               f"noreserve: HugetlbPages {r.int('hugetlb_bytes')} == both mappings {2 * size}")
    stats = d.client_stats(r.int("pid"))
    ctx.expect(stats is not None and stats.get("faults_served", 0) >= size // (2 * MiB),
               f"noreserve: the daemon served the faults ({stats})")
    ctx.expect("(1 wanted, 1 added)" in d.log(), "noreserve: the daemon grew the pool at the faults")
    ctx.expect(wait_nr(0) == 0, f"noreserve: pool back to 0 pages after the program (nr_hugepages={read_nr()})")


def budget(ctx):
    d = hptest.Daemon(ctx, [], "budget")
    with open(d.config, "w") as f:
        f.write("[Pool]\nHugetlbMaxSize=64M\n")
    ctx.daemons.append(d)
    d.start()
    # without the daemon first: what the program sees with an empty pool
    plain = hptest.run([program(ctx), "128M"], timeout=60)
    ctx.require(plain.rc == 3, f"budget: without the daemon, 128 MiB of MAP_HUGETLB fails (rc {plain.rc})")
    r = hptest.run(under_shim(ctx, d, ["128M"]), timeout=120)
    ctx.expect(r.rc == 3 and r.kv.get("mmap_errno") == plain.kv.get("mmap_errno"),
               f"budget: beyond HugetlbMaxSize= the mmap fails as without the daemon "
               f"({r.kv.get('mmap_errno')} vs {plain.kv.get('mmap_errno')})")
    ctx.expect("HugetlbMaxSize" in r.err, "budget: --debug names the budget that said no")
    ctx.expect(wait_nr(0) == 0, f"budget: the pool stays at 0 (nr_hugepages={read_nr()})")
    r = hptest.run(under_shim(ctx, d, ["32M"]), timeout=120)
    ctx.expect(r.rc == 0 and r.int("mismatches") == 0 and r.int("hugetlb_bytes") == 32 * MiB,
               f"budget: a client within the budget is served (rc {r.rc})" + ("" if r.rc == 0 else r.describe()))
    ctx.expect(wait_nr(0) == 0, f"budget: pool back to 0 pages (nr_hugepages={read_nr()})")
    ctx.expect(d.stop() == 0, "budget: the daemon exits 0")


def crash(ctx):
    """Pages a SIGKILLed daemon added go back when the next one starts."""
    size = 32 * MiB
    d = hptest.Daemon(ctx, [], "crash-1")
    ctx.daemons.append(d)
    d.start()
    out = os.path.join(ctx.tmp, "crash.out")
    with open(out, "w") as f:
        p = hptest.spawn(under_shim(ctx, d, ["--hold", "30", f"{size // MiB}M"]), stdout=f, stderr=subprocess.STDOUT)
    end = time.monotonic() + 120
    while "hugetlb_bytes=" not in open(out).read() and p.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    kv = hptest.parse_kv(open(out).read())
    ctx.require(kv.get("mismatches") == "0" and kv.get("hugetlb_bytes") == str(size),
                f"crash: the program got its {size // MiB} MiB from the pool the daemon grew ({kv})")
    d.kill9()
    hptest.kill_tree(p)
    # what the kernel does on its own: the added pages stay in the pool, free
    ctx.require(read_nr() == size // (2 * MiB),
                f"crash: after kill -9 the pool still holds the {size // (2 * MiB)} pages the daemon added "
                f"(nr_hugepages={read_nr()})")
    d2 = hptest.Daemon(ctx, [], "crash-2")         # the same directory: the same record
    ctx.daemons.append(d2)
    d2.start()
    ctx.expect(wait_nr(0) == 0, f"crash: the next daemon gave them back (nr_hugepages={read_nr()})")
    ctx.expect("did not exit cleanly" in d2.log(), "crash: the next daemon said where the pages came from")
    ctx.expect(d2.stop() == 0 and read_nr() == 0, f"crash: the pool stays at 0 (nr_hugepages={read_nr()})")
    ctx.expect(not os.path.exists(os.path.join(ctx.tmp, "hugetlb-pool")),
               "crash: no record is left once the pool is back where it was")

    # someone sizes the pool after the crash: that is theirs, not ours
    d3 = hptest.Daemon(ctx, [], "crash-3")
    ctx.daemons.append(d3)
    d3.start()
    with open(out, "w") as f:
        p = hptest.spawn(under_shim(ctx, d3, ["--hold", "30", f"{size // MiB}M"]), stdout=f, stderr=subprocess.STDOUT)
    end = time.monotonic() + 120
    while "hugetlb_bytes=" not in open(out).read() and p.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    d3.kill9()
    hptest.kill_tree(p)
    write_nr(read_nr() + 1)
    admin = read_nr()
    d4 = hptest.Daemon(ctx, [], "crash-4")
    ctx.daemons.append(d4)
    d4.start()
    time.sleep(2)
    ctx.expect(read_nr() == admin and "someone else sized it" in d4.log(),
               f"crash: a pool resized since the crash is left as it is ({read_nr()} vs {admin})")
    ctx.expect(d4.stop() == 0, "crash: that daemon exits 0")
    write_nr(0)


def shared(ctx, d):
    """MAP_SHARED|MAP_HUGETLB and SysV SHM_HUGETLB: the kernel reserves the
    pages at mmap/shmget and fails with ENOMEM on an empty pool; the shim
    asks the daemon first, and the pages go back once the program is gone."""
    size = 32 * MiB
    for mode in ("--shared", "--shm"):
        plain = hptest.run([program(ctx), mode, f"{size // MiB}M"], timeout=60)
        ctx.expect(plain.rc == 3 and plain.kv.get("mmap_errno") == "ENOMEM",
                   f"shared {mode}: without the daemon an empty pool says {plain.kv.get('mmap_errno')}")
        r = hptest.run(under_shim(ctx, d, [mode, f"{size // MiB}M"]), timeout=120)
        ctx.expect(r.rc == 0 and r.int("mismatches") == 0 and r.int("fork_mismatches") == 0,
                   f"shared {mode}: under the daemon it is made, data intact, a forked child's writes seen "
                   f"(rc {r.rc})" + ("" if r.rc == 0 else r.describe()))
        ctx.expect(r.rc == 0 and r.int("hugetlb_bytes") == size,
                   f"shared {mode}: HugetlbPages {r.kv.get('hugetlb_bytes')} == {size}")
        ctx.expect(wait_nr(0) == 0, f"shared {mode}: pool back to 0 pages after the program (nr_hugepages={read_nr()})")


def policy(ctx, d):
    # the workload maps without MAP_HUGETLB; the policy makes it hugetlb
    size = 16 * MiB
    r = hptest.run(under_shim(ctx, d, ["--plain", f"{size // MiB}M"], env_backend="hugetlb"), timeout=120)
    ctx.expect(r.rc == 0 and r.int("mismatches") == 0,
               f"policy: --backend hugetlb: program exits 0, data intact (rc {r.rc})" + ("" if r.rc == 0 else r.describe()))
    ctx.expect(r.int("hugetlb_bytes") == size,
               f"policy: --backend hugetlb made the mapping hugetlb ({r.int('hugetlb_bytes')} bytes)")
    ctx.expect(wait_nr(0) == 0, f"policy: pool back to 0 pages (nr_hugepages={read_nr()})")


def test(ctx):
    if not os.path.exists("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        raise hptest.Skip("no 2 MiB huge pages in this kernel")
    if not program(ctx):
        raise hptest.Failure("HP_HUGETLB (tests/hp-hugetlb) not set; run with meson test")
    orig = read_nr()

    def restore():
        try:
            write_nr(orig)
        except OSError:
            pass
    atexit.register(restore)
    try:
        write_nr(0)
        ctx.require(read_nr() == 0, "the hugetlb pool can be emptied for the test")
        d = ctx.daemon()
        reserved(ctx, d)
        noreserve(ctx, d)
        shared(ctx, d)
        policy(ctx, d)
        ctx.expect(d.stop() == 0, "the daemon exits 0")
        budget(ctx)
        crash(ctx)
    finally:
        for d in ctx.daemons:
            if d.alive():
                d.stop(timeout=10)
        restore()


if __name__ == "__main__":
    hptest.main(test)
