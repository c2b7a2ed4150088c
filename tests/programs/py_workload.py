# SPDX-License-Identifier: LGPL-2.1-or-later
"""A Python program that knows nothing about hugepaged: tests/programs/python.py
runs it with Debian's /usr/bin/python3, with and without hugepaged-run.

  py_workload.py dense SIZE_MIB [--wait S]   bytearray of SIZE, filled, hashed
  py_workload.py sparse SIZE_MIB             mmap.mmap(MAP_PRIVATE), 1 byte per 2 MiB
  py_workload.py runtime                     threads, signals, fork, subprocess, exec

Standard library only. Prints key=value lines: pid, the results (hash=,
rss=, anon_huge= in bytes) and timings (*_s, seconds, reported, never
judged). Exit status 0 unless a check inside failed (1).
"""

import ctypes
import hashlib
import mmap
import os
import signal
import subprocess
import sys
import threading
import time

MiB = 1 << 20
REGION = 2 * MiB


def out(k, v):
    print(f"{k}={v}", flush=True)


def rollup():
    d = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            p = line.split()
            if len(p) >= 3 and p[0].endswith(":") and p[2] == "kB":
                d[p[0][:-1]] = int(p[1]) * 1024
    return d


def range_memory(addr, length):
    """Rss and AnonHugePages of [addr, addr+length) summed over its VMAs."""
    rss = huge = 0
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo < addr + length and hi > addr
            elif inside and head == "Rss:":
                rss += int(line.split()[1]) * 1024
            elif inside and head == "AnonHugePages:":
                huge += int(line.split()[1]) * 1024
    return rss, huge


def fill(buf, tag):
    """Deterministic contents: a 1 MiB block, each MiB stamped with its index."""
    block = hashlib.sha512(tag).digest() * (MiB // 64)
    view = memoryview(buf)
    for off in range(0, len(buf), MiB):
        end = min(len(buf), off + MiB)
        view[off:end] = block[:end - off]
        view[off:off + 8] = (off // MiB).to_bytes(8, "little")


def dense(size, wait_s):
    t0 = time.monotonic()
    b = bytearray(size)
    fill(b, b"dense")
    t1 = time.monotonic()
    h = hashlib.sha256(b).hexdigest()
    t2 = time.monotonic()
    addr = ctypes.addressof(ctypes.c_char.from_buffer(b))
    # Huge pages come from the daemon's promotions, some finishing just after
    # the writes: wait for them up to wait_s (a bound, not a target).
    end = time.monotonic() + wait_s
    while True:
        rss, huge = range_memory(addr, size)
        if huge >= size * 0.99 or time.monotonic() >= end:
            break
        time.sleep(0.1)
    m = rollup()
    out("hash", h)
    out("size", size)
    out("buffer_rss", rss)
    out("buffer_anon_huge", huge)
    out("rss", m["Rss"])
    out("anon_huge", m["AnonHugePages"])
    out("aligned", int(addr % REGION < 64))
    out("fill_s", f"{t1 - t0:.3f}")
    out("hash_s", f"{t2 - t1:.3f}")


def sparse(size):
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    first = (-addr) % REGION          # the first 2 MiB boundary inside
    regions = 0
    t0 = time.monotonic()
    for off in range(first, size, REGION):
        m[off] = 1
        regions += 1
    t1 = time.monotonic()
    time.sleep(0.5)                    # let any promotion in flight land
    rss, huge = range_memory(addr, size)
    ok = all(m[off] == 1 for off in range(first, size, REGION))
    out("regions", regions)
    out("mapping_rss", rss)
    out("mapping_anon_huge", huge)
    out("touch_s", f"{t1 - t0:.3f}")
    out("data_ok", int(ok))


# ---- runtime: what Python programs do besides allocating ----------------------

def block(tag, size):
    b = bytearray(size)
    fill(b, tag)
    return b, hashlib.sha256(b).digest()


def check(cond, what):
    if not cond:
        print(f"py_workload: FAILED: {what}", file=sys.stderr, flush=True)
        global failures
        failures += 1


failures = 0


def runtime():
    # signals arriving while threads fault: a timer every 200 us
    hits = [0]

    def on_alarm(signum, frame):
        hits[0] += 1
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)

    # threads creating, growing and dropping large objects at once
    errors = []

    def worker(n):
        try:
            for i in range(6):
                size = (8 + 8 * ((n + i) % 5)) * MiB
                b, digest = block(b"t%d.%d" % (n, i), size)
                b.extend(bytes(4 * MiB))             # realloc of a large block
                check(hashlib.sha256(b[:size]).digest() == digest, f"thread {n} round {i}: data")
                check(not any(b[size:size + 4 * MiB:4096]), f"thread {n} round {i}: grown tail is zero")
        except Exception as e:      # noqa: BLE001 (reported, then failed)
            errors.append(repr(e))
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    check(not errors, f"threads: {errors}")
    out("signals", hits[0])

    # fork without exec: the child reads, changes and frees inherited blocks
    keep, keep_digest = block(b"keep", 64 * MiB)
    pid = os.fork()
    if pid == 0:
        ok = hashlib.sha256(keep).digest() == keep_digest
        keep[0:8] = b"childxxx"
        keep.extend(bytes(8 * MiB))
        fresh, fresh_digest = block(b"child", 32 * MiB)
        ok = ok and hashlib.sha256(fresh).digest() == fresh_digest
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    out("fork_child", pid)
    check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"forked child: status {status:#x}")
    check(hashlib.sha256(keep).digest() == keep_digest, "parent's block after the child changed its copy")

    # subprocess (vfork/posix_spawn + exec): the child connects on its own
    r = subprocess.run([sys.executable, __file__, "dense", "64", "--wait", "5"],
                       capture_output=True, text=True, check=False)
    check(r.returncode == 0, f"subprocess: status {r.returncode}: {r.stderr}")
    kv = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    out("spawned_pid", kv.get("pid"))
    b, digest = block(b"dense", 64 * MiB)
    check(kv.get("hash") == hashlib.sha256(b).hexdigest(), "subprocess: same hash as here")
    del b

    # exec: the new image (the same pid) connects on its own and hashes
    out("failures", failures)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, __file__, "dense", "64", "--wait", "5"])


def mapped_allocators():
    """File names of the malloc libraries mapped in this process (hugepaged-run --allocator)."""
    names = set()
    with open("/proc/self/maps") as f:
        for line in f:
            name = line.rsplit("/", 1)[-1].strip() if "/" in line else ""
            if "malloc" in name:
                names.add(name)
    return ",".join(sorted(names)) or "none"


def main():
    out("pid", os.getpid())
    out("malloc_libs", mapped_allocators())
    mode = sys.argv[1]
    if mode == "dense":
        wait_s = float(sys.argv[sys.argv.index("--wait") + 1]) if "--wait" in sys.argv else 0.0
        dense(int(sys.argv[2]) * MiB, wait_s)
    elif mode == "sparse":
        sparse(int(sys.argv[2]) * MiB)
    elif mode == "runtime":
        runtime()
    else:
        sys.exit(f"py_workload: unknown mode {mode}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
