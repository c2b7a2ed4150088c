# SPDX-License-Identifier: LGPL-2.1-or-later
"""S12 (bench.py): fill a bytearray of argv[1] bytes (its first touch), then
hash it (steady state: the memory is all there), and report both times and
the process's memory. Output: key=value lines."""
import hashlib
import sys
import time

size = int(sys.argv[1])
t0 = time.monotonic()
b = bytearray(size)
fill = time.monotonic() - t0
t0 = time.monotonic()
hashlib.sha256(b).digest()
digest = time.monotonic() - t0
mem = {}
with open("/proc/self/smaps_rollup") as f:
    for line in f:
        p = line.split()
        if len(p) >= 3 and p[2] == "kB":
            mem[p[0][:-1]] = int(p[1]) * 1024
print(f"fill_ms={fill * 1e3:.1f}")
print(f"hash_mb_per_s={size / digest / 1e6:.1f}")
print(f"rss_bytes={mem.get('Rss', 0)}")
print(f"anon_huge_bytes={mem.get('AnonHugePages', 0)}")
