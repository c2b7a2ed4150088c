#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Run one libFuzzer harness for a bounded time (suite 'fuzz', builds with
-Dfuzz=true): `run-fuzz.py HARNESS SEED_CORPUS DICT SECONDS`.

The seed corpus is only read: new inputs go to a temporary directory,
removed afterwards. A crash, leak, timeout or sanitizer report fails the
test; the input that caused it is printed (hex) and kept next to the
harness as crash-*, leak-* or timeout-*, to add to the seed corpus once
fixed. Prints the executions, the edges covered (of those instrumented)
and the features found.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main():
    harness, seeds, dictionary, seconds = sys.argv[1:5]
    work = tempfile.mkdtemp(prefix="hugepaged-fuzz-")
    try:
        corpus = os.path.join(work, "corpus")
        os.mkdir(corpus)
        prefix = os.path.join(os.path.dirname(harness), os.path.basename(harness) + "-")
        argv = [harness, f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048",
                "-print_final_stats=1", "-use_value_profile=1", f"-dict={dictionary}",
                f"-artifact_prefix={prefix}", corpus, seeds]
        print("$ " + " ".join(argv), flush=True)
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           errors="replace", timeout=int(seconds) + 600)
        out = p.stdout
        lines = out.splitlines()
        # the tail: progress lines, then the final stats
        for l in lines[-40:]:
            print(l)
        execs = re.findall(r"stat::number_of_executed_units: (\d+)", out)
        cov = re.findall(r"\bcov: (\d+) ft: (\d+)", out)
        total = re.findall(r"Loaded \d+ modules\s+\((\d+) inline 8-bit counters\)", out)
        if execs and cov:
            edges, ft = cov[-1]
            of = f" of {total[0]} instrumented" if total else ""
            print(f"fuzz: {os.path.basename(harness)}: {execs[-1]} executions in {seconds} s, "
                  f"{edges} edges covered{of}, {ft} features, {len(os.listdir(corpus))} new inputs")
        if p.returncode != 0:
            for a in glob.glob(prefix + "*"):
                with open(a, "rb") as f:
                    data = f.read()
                print(f"fuzz: {a} ({len(data)} bytes): {data[:512].hex()}")
            print(f"fuzz: FAILED (exit status {p.returncode})")
            return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
