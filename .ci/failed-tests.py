#!/usr/bin/env python3
"""Print, for every test meson recorded as not passed in the given build
directories, its name, result and the last lines of its output, then the
sanitizer reports test.sh --sanitize kept (CI keeps only the tail of a run's
log: this puts the failures there)."""
import json
import os
import sys

TAIL = 60
OK = {"OK", "SKIP", "EXPECTEDFAIL"}

for build in sys.argv[1:]:
    path = os.path.join(build, "meson-logs", "testlog.json")
    try:
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
    except OSError:
        continue
    for r in records:
        if r.get("result") in OK:
            continue
        print(f"==== {build}: {r.get('name')}: {r.get('result')} "
              f"(exit {r.get('returncode')}, {r.get('duration', 0):.1f} s)")
        lines = (r.get("stdout") or "").splitlines()
        for line in lines[-TAIL:]:
            print("    " + line)
    reports = os.path.join(build, "meson-logs", "sanitizer-reports.txt")
    if os.path.exists(reports):
        with open(reports, errors="replace") as f:
            lines = f.read().splitlines()
        print(f"==== {build}: sanitizer reports ({len(lines)} lines, the last {TAIL * 2}):")
        for line in lines[-TAIL * 2:]:
            print("    " + line)
