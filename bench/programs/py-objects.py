# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench/allocators.py's python3 workload: many mid-size objects.

600,000 bytes objects of 600..2000 bytes (above pymalloc's 512-byte limit:
each one a malloc() call), a third of them replaced by larger bytearrays
(frees and reallocations), then all hashed. Prints the SHA-256 (the same
under every allocator) and its own run time, then tells the runner it holds
its memory ($HP_BENCH_LOADED gets its pid) and waits for $HP_BENCH_GO.
"""
import hashlib
import os
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 600_000

t0 = time.monotonic()
objs = {}
for i in range(N):
    objs[i] = bytes([i & 0xFF]) * (600 + (i * 7919) % 1400)
for i in range(0, N, 3):
    objs[i] = bytearray(objs[i]) + b"x"
h = hashlib.sha256()
for i in range(N):
    h.update(objs[i])
seconds = time.monotonic() - t0
print(f"digest={h.hexdigest()}\nseconds={seconds:.3f}", flush=True)

loaded, go = os.environ.get("HP_BENCH_LOADED"), os.environ.get("HP_BENCH_GO")
if loaded and go:
    with open(loaded + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(loaded + ".tmp", loaded)
    while not os.path.exists(go):
        time.sleep(0.05)
