#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The shmem backend: anonymous shared memory (MAP_SHARED|MAP_ANONYMOUS)
made a mapping of a file on the daemon's huge tmpfs, reserved 2 MiB at a
time, mapped 4 KiB at a time with no copy, collapsed in place, released
under memory pressure.

A program under hugepaged-run maps 64 MiB of anonymous shared memory:
- story: the mapping is the daemon's file; one page written per region of
  its first half, every page of its second half; the second half gets
  PMD-mapped (smaps ShmemPmdMapped/FilePmdMapped) by collapses in place
  (every reservation got a 2 MiB page, nothing copied: the client's
  pages_populated, the core's copy counter, stays 0); under memory
  pressure (LowMemAvailable=100% and a reload) the daemon punches every
  untouched subpage of the sparse reservations: the file then holds the
  touched pages only, 4 KiB each; the released pages read zero, every
  written page is intact, written again; a forked child's writes are seen
  by the parent;
- kill: the daemon is killed with SIGKILL while the program runs: every
  page keeps its data, the pages never written read zero, the rest of the
  memory works (the kernel serves it);
- bad input: a MAP_SHARED mapping of a real file is never touched (it maps
  the file, the file has the data, the daemon registered nothing); a client
  registering as HP_RANGE_SHMEM memory that is not one of the daemon's
  files (anonymous shared, a memfd, private) gets an error that says so, a
  misaligned one too, and the daemon goes on serving it: its own file and
  hugepaged_alloc_shared() work.
- accounting: the pages the daemon reserves are charged to its own memory
  cgroup, so in a cgroup of 256 MiB a request of 240 MiB (more than the
  room less the margin) is refused (counted, --debug says why) and the
  program gets ordinary shared memory, data intact; 64 MiB is granted.
The tmpfs is never left mounted (it is detached as soon as it is open).
"""

import os
import signal
import subprocess
import time

import hptest

MiB = 1 << 20


def program(ctx):
    p = os.environ.get("HP_SHMEM", "")
    if not p or not os.access(p, os.X_OK):
        raise hptest.Failure("HP_SHMEM: the test program is not built")
    return p


def under_shim(ctx, d, args):
    return [ctx.paths.run, "--socket", d.socket, "--debug", "--", program(ctx), *args]


def wait_key(path, key, proc, timeout):
    """The key=value lines of path once key is there (or the program ended)."""
    end = time.monotonic() + timeout
    while True:
        with open(path) as f:
            text = f.read()
        kv = hptest.parse_kv(text)
        if key in kv or proc.poll() is not None or time.monotonic() >= end:
            return kv
        time.sleep(0.1)


def wait_log(d, text, timeout):
    end = time.monotonic() + timeout
    while text not in d.log():
        if time.monotonic() >= end:
            return False
        time.sleep(0.1)
    return True


def set_pressure(d, on):
    with open(d.config, "w") as f:
        f.write("[Pressure]\nLowMemAvailable=100%\n" if on else "")
    d.proc.send_signal(signal.SIGHUP)


def resume(p, out):
    """Let the program waiting for SIGUSR1 go on and finish (killed after
    300 s): its output file's text and key=value lines."""
    p.send_signal(signal.SIGUSR1)
    try:
        p.wait(timeout=300)
    except subprocess.TimeoutExpired:
        hptest.kill_tree(p)
    with open(out) as f:
        text = f.read()
    return text, hptest.parse_kv(text)


def story(ctx, d):
    size = 64 * MiB
    half = size // 2
    regions = half // (2 * MiB)
    out = os.path.join(ctx.tmp, "story.out")
    with open(out, "w") as f:
        p = hptest.spawn(under_shim(ctx, d, [f"{size // MiB}M"]), stdout=f, stderr=subprocess.STDOUT)
    kv = wait_key(out, "touched_file_bytes", p, 300)
    ctx.require("touched_file_bytes" in kv, f"story: the program touched its memory ({kv})")
    name = kv.get("map_name", "")
    ctx.expect(not name.startswith("/dev/zero") and name != "-",
               f"story: the anonymous shared mapping is a file of the daemon's ({name})")
    ctx.expect(int(kv["touched_pmd"]) >= half,
               f"story: the dense half is PMD-mapped: ShmemPmdMapped+FilePmdMapped {kv['touched_pmd']} >= {half}")
    ctx.expect(int(kv["touched_file_bytes"]) == size,
               f"story: every region has its 2 MiB reserved in the file ({kv['touched_file_bytes']} == {size})")

    set_pressure(d, True)
    ctx.expect(wait_log(d, "untouched subpages of shared reservations released", 60),
               "story: under memory pressure the daemon released the untouched subpages")
    set_pressure(d, False)
    text, kv = resume(p, out)
    ctx.require(p.returncode == 0, f"story: the program exits 0 (got {p.returncode}):\n" + hptest.indent(text))
    touched = regions * 4096
    ctx.expect(int(kv["released_file_bytes"]) == half + touched,
               f"story: after the release the file holds the dense half and the {regions} touched 4 KiB pages "
               f"of the sparse half only ({kv['released_file_bytes']} == {half + touched})")
    ctx.expect(int(kv["released_rss"]) <= half + touched,
               f"story: Rss of the mapping after the release {kv['released_rss']} <= {half + touched}")
    ctx.expect(kv.get("mismatches") == "0", f"story: every written page intact ({kv.get('mismatches')} mismatches)")
    ctx.expect(kv.get("released_nonzero") == "0",
               f"story: released pages read zero ({kv.get('released_nonzero')} words not zero)")
    ctx.expect(kv.get("fork_mismatches") == "0",
               f"story: a forked child's writes are seen by the parent ({kv.get('fork_mismatches')} mismatches)")
    stats = d.client_stats(int(kv["pid"]))
    ctx.require(stats is not None, "story: the daemon logged the client's end")
    ctx.expect(stats.get("shmem_reservations", 0) >= 2 * regions,
               f"story: one reservation per region at least ({stats.get('shmem_reservations')})")
    ctx.expect(stats.get("shmem_reservations_nohuge", 0) == 0,
               f"story: every reservation got a 2 MiB page ({stats.get('shmem_reservations_nohuge', 0)} did not)")
    ctx.expect(stats.get("shmem_promotions", 0) >= regions,
               f"story: the dense regions were collapsed in place ({stats.get('shmem_promotions')})")
    ctx.expect(stats.get("shmem_subpages_punched", 0) == regions * 511,
               f"story: {regions} x 511 subpages released ({stats.get('shmem_subpages_punched')})")
    ctx.expect(stats.get("pages_populated", 0) == 0,
               f"story: nothing copied (pages_populated {stats.get('pages_populated', 0)})")
    ctx.expect(not [l for l in d.lines_about(int(kv["pid"])) if "no reservation" in l],
               "story: every fault got its reservation (an unmap elsewhere dropped nothing)")
    ctx.expect(stats.get("shmem_subpages_mapped", 0) > 0,
               f"story: subpages mapped by UFFDIO_CONTINUE ({stats.get('shmem_subpages_mapped')})")


def killed(ctx):
    d = ctx.daemon(name="kill")
    size = 32 * MiB
    out = os.path.join(ctx.tmp, "kill.out")
    with open(out, "w") as f:
        p = hptest.spawn(under_shim(ctx, d, ["--kill", f"{size // MiB}M"]), stdout=f, stderr=subprocess.STDOUT)
    kv = wait_key(out, "written_file_bytes", p, 120)
    ctx.require("written_file_bytes" in kv, f"kill: the program wrote half its memory ({kv})")
    ctx.expect(int(kv["written_file_bytes"]) == size // 2 and int(kv["written_pmd"]) == 0,
               f"kill: its regions were reserved by the daemon, not collapsed ({kv['written_file_bytes']}, "
               f"{kv['written_pmd']} PMD-mapped)")
    d.kill9()
    text, kv = resume(p, out)
    ctx.expect(p.returncode == 0 and kv.get("mismatches") == "0" and kv.get("nonzero") == "0",
               f"kill: after kill -9 of the daemon every page is intact and the others read zero "
               f"(rc {p.returncode}, {kv.get('mismatches')} mismatches, {kv.get('nonzero')} nonzero)")


def real_file(ctx, d):
    path = os.path.join(ctx.tmp, "real-file")
    r = hptest.run(under_shim(ctx, d, ["--file", path, "8M"]), timeout=120)
    ctx.require(r.rc == 0, f"file: the program exits 0 (rc {r.rc})" + ("" if r.rc == 0 else r.describe()))
    ctx.expect(r.kv.get("map_name") == path, f"file: it maps the real file ({r.kv.get('map_name')})")
    ctx.expect(r.kv.get("file_mismatches") == "0", "file: the file has what was written through the mapping")
    pid = r.int("pid")
    d.client_stats(pid)
    reg = [l for l in d.lines_about(pid) if "registered shmem" in l or "shared file" in l]
    ctx.expect(not reg, f"file: the daemon made and registered nothing for it ({reg})")


def bad(ctx, d):
    r = hptest.run([program(ctx), "--bad", d.socket], timeout=120)
    ctx.require(r.rc == 0, f"bad: the program exits 0 (rc {r.rc})" + ("" if r.rc == 0 else r.describe()))
    for what in ("anon_shared", "memfd", "private"):
        err = r.kv.get(f"{what}_error", "")
        ctx.expect(r.int(what) < 0 and "not a shared mapping of a file hugepaged made" in err,
                   f"bad: {what} registered as shmem is refused and the error says why ({r.kv.get(what)}: {err})")
    ctx.expect(r.int("misaligned") < 0 and "shmem" in r.kv.get("misaligned_error", ""),
               f"bad: a range not starting on 2 MiB is refused ({r.kv.get('misaligned_error')})")
    ctx.expect(r.int("create") == 0 and r.int("register") == 0 and r.kv.get("own_mismatches") == "0",
               "bad: the same client then gets a file of the daemon's, registers and uses it")
    ctx.expect(r.int("too_big") < 0, f"bad: a file larger than the protocol allows is refused "
               f"({r.kv.get('too_big_error')})")
    ctx.expect(r.kv.get("lib_alloc") == "ok" and r.kv.get("lib_aligned") == "1"
               and r.kv.get("lib_fd_mismatches") == "0",
               "bad: hugepaged_alloc_shared() returns 2 MiB-aligned memory whose fd reads what was written")
    ctx.expect(d.alive(), "bad: the daemon keeps serving")


def cgroup_budget(ctx, d):
    """The daemon's pages are charged to its own cgroup: a client gets no
    more than the room its cgroup leaves."""
    import headroom
    limit = 256 * MiB
    cg = headroom.Cgroup(limit, v2=False if os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes") else True)
    try:
        big = hptest.run(cg.argv(under_shim(ctx, d, ["--touch", "240M"])), timeout=120)
        ctx.expect(big.rc == 0 and big.kv.get("mismatches") == "0" and big.kv.get("map_name", "").startswith("/dev/zero"),
                   f"cgroup: 240 MiB in a 256 MiB cgroup stays ordinary shared memory, data intact "
                   f"({big.kv.get('map_name')}, rc {big.rc})" + ("" if big.rc == 0 else big.describe()))
        ctx.expect("over the room of its memory cgroup" in big.err,
                   "cgroup: --debug says the cgroup's room said no")
        stats = d.client_stats(big.int("pid")) or {}
        ctx.expect(stats.get("shmem_refused", 0) == 1, f"cgroup: the refusal is counted ({stats.get('shmem_refused')})")
        small = hptest.run(cg.argv(under_shim(ctx, d, ["--touch", "64M"])), timeout=120)
        ctx.expect(small.rc == 0 and small.kv.get("mismatches") == "0"
                   and not small.kv.get("map_name", "/dev/zero").startswith("/dev/zero"),
                   f"cgroup: 64 MiB in the same cgroup is the daemon's file ({small.kv.get('map_name')})")
        ctx.expect(small.kv.get("exec_ok") == "1", "cgroup: it can be made executable, as anonymous shared memory can")
    finally:
        cg.close()


def test(ctx):
    program(ctx)
    d = ctx.daemon()
    if "the shmem backend is off" in d.log():
        raise hptest.Skip("the shmem backend is off: " + d.log())
    story(ctx, d)
    real_file(ctx, d)
    bad(ctx, d)
    cgroup_budget(ctx, d)
    ctx.expect(d.stop() == 0, "the daemon exits 0")
    killed(ctx)
    with open("/proc/mounts") as f:
        ctx.expect("hugepaged-shmem" not in f.read(), "no tmpfs of the daemon's is left mounted")


if __name__ == "__main__":
    hptest.main(test)
