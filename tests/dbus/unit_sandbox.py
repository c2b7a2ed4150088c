# SPDX-License-Identifier: LGPL-2.1-or-later
"""Tracing under the shipped unit. PID 1 is not systemd here, so the test
reads the built hugepaged.service and applies what of it concerns privilege
itself, with hp-unit-sandbox: CapabilityBoundingSet=, NoNewPrivileges=,
SystemCallFilter= (each group expanded by this machine's `systemd-analyze
syscall-filter`, the lines applied in order as systemd does, plus the calls
systemd always allows), SystemCallErrorNumber=, SystemCallArchitectures=
native and RestrictAddressFamilies=AF_UNIX; PrivateNetwork= and
PrivateMounts= with `unshare --net --mount`. The daemon started so starts,
is confined (Seccomp: 2, CapBnd: the unit's set, NoNewPrivs), keeps only
CAP_SYS_PTRACE, CAP_SYS_NICE and CAP_KILL once running, shows Tracing true,
has the shmem backend on (its tmpfs mounted at start),
and its tracer sees a client's faults (KernelFaults > 0). Control: the same
sandbox without `bpf` in the allow list gives Tracing false, so the filter
is really applied. hugepagectl confined like hugepaged-metrics.service (no
capabilities, its filter, no network) writes the metrics file. Not reproduced: the mount namespace settings
(ProtectSystem=, ProtectKernelTunables=, ...), DeviceAllow=, PrivateTmp=."""

import os
import re
import shutil
import subprocess

from dbustest import (Bus, Daemon, Failure, Skip, Workload, env_path, expect, log, main, require_root,
                      tempdir, wait_for)

# systemd.exec(5): "execve, exit, exit_group, getrlimit, rt_sigreturn, sigreturn and the system calls
# for querying time and sleeping are implicitly allow-listed".
IMPLICIT = ["execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn", "clock_getres",
            "clock_gettime", "clock_nanosleep", "gettimeofday", "nanosleep", "time"]


def unit_settings(path):
    """{key: [values in order]} of the [Service] section."""
    out, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
            elif section == "[Service]" and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
    return out


_groups = {}


def expand(name):
    """The system calls of a name or @group (nested groups expanded)."""
    if not name.startswith("@"):
        return {name}
    if name not in _groups:
        r = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager", name], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise Failure(f"systemd-analyze syscall-filter {name}: {r.stderr.strip()}")
        calls = set()
        for line in r.stdout.splitlines()[1:]:
            t = line.strip()
            if not t or t.startswith("#"):
                continue
            calls |= expand(t)
        _groups[name] = calls
    return _groups[name]


def syscall_allow_list(lines):
    """systemd's rule: the first line sets allow (or deny) mode; then each line adds to or
    (with ~) removes from the list, in order."""
    allow = None
    for v in lines:
        deny = v.startswith("~")
        names = set().union(*(expand(n) for n in v.lstrip("~").split()))
        if allow is None:
            if deny:
                raise Skip("the unit's SystemCallFilter= is a deny list; this test handles allow lists")
            allow = set()
        allow = allow - names if deny else allow | names
    return allow | set(IMPLICIT)


def capability_numbers(names):
    header = open("/usr/include/linux/capability.h").read()
    nums = dict(re.findall(r"#define (CAP_[A-Z_]+)\s+(\d+)\s*$", header, re.M))
    missing = [n for n in names if n not in nums]
    if missing:
        raise Failure(f"unknown capabilities in the unit: {missing}")
    return [int(nums[n]) for n in names]


def status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def start(d, sandbox, caps, allow, errno):
    bus = Bus(d)
    wrapper = ["unshare", "--net", "--mount", "--propagation", "slave", "--", sandbox, "--caps", ",".join(map(str, caps)), "--errno", str(errno), "--allow", ",".join(sorted(allow)),
               "--unix-only", "--"]
    return bus, Daemon(d, bus=bus, wrapper=wrapper)


def test():
    require_root()
    sandbox = os.environ.get("HP_UNIT_SANDBOX")
    if not sandbox:
        raise Skip("hp-unit-sandbox was not built: libseccomp is missing (Debian package libseccomp-dev; "
                   "./test.sh installs it)")
    if not shutil.which("systemd-analyze"):
        raise Skip("systemd-analyze is missing (Debian package systemd)")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        raise Skip("the kernel has no BTF: the tracer cannot load anywhere")
    unit = unit_settings(env_path("HP_UNIT_FILE"))
    expect(unit.get("NoNewPrivileges") == ["yes"] and unit.get("SystemCallArchitectures") == ["native"] and
           unit.get("RestrictAddressFamilies") == ["AF_UNIX"] and unit.get("PrivateNetwork") == ["yes"] and
           unit.get("PrivateMounts") == ["yes"], "the unit sets what the test applies")
    cap_names = " ".join(unit["CapabilityBoundingSet"]).split()
    caps = capability_numbers(cap_names)
    allow = syscall_allow_list(unit["SystemCallFilter"])
    errno = {"EPERM": 1}[unit["SystemCallErrorNumber"][0]]
    log(f"bounding set {cap_names}; {len(allow)} system calls allowed; "
        f"bpf {'allowed' if 'bpf' in allow else 'denied'}, capset {'allowed' if 'capset' in allow else 'denied'}")

    d = tempdir()
    bus, daemon = start(d, sandbox, caps, allow, errno)
    st = status(daemon.proc.pid)
    mask = sum(1 << c for c in caps)
    expect(st["Seccomp"] == "2" and st["NoNewPrivs"] == "1", "the daemon runs under a seccomp filter, no_new_privs")
    expect(int(st["CapBnd"], 16) == mask, f"its bounding set is the unit's ({st['CapBnd']})")
    kept = sum(1 << c for c in capability_numbers(["CAP_SYS_PTRACE", "CAP_SYS_NICE", "CAP_KILL"]))
    expect(int(st["CapEff"], 16) == kept and int(st["CapPrm"], 16) == kept,
           f"once running it keeps CAP_SYS_PTRACE, CAP_SYS_NICE, CAP_KILL only ({st['CapEff']})")
    expect(bus.get("Tracing") is True, f"Tracing is true under the unit's confinement")
    expect("shmem backend: a huge tmpfs" in daemon.log(),
           "the shmem backend mounted its tmpfs under the unit's confinement")
    w = Workload(daemon, d)
    wait_for("the client's object", lambda: any(c[0] == w.pid for c in bus.clients()))
    expect(w.ask("touch 1") == "touched", "a client writes its memory")
    path = f"/org/hugepaged1/client/{w.pid}"
    faults = wait_for("the tracer to count the client's faults",
                      lambda: bus.get("KernelFaults", path, "org.hugepaged1.Client"), timeout=10)
    expect(faults > 0, f"the tracer saw the client's faults (KernelFaults {faults})")
    # hugepaged-metrics.service's confinement lets hugepagectl do its job.
    metrics_unit = unit_settings(os.path.join(os.path.dirname(env_path("HP_UNIT_FILE")), "hugepaged-metrics.service"))
    expect(metrics_unit.get("CapabilityBoundingSet") == [""] and metrics_unit.get("PrivateNetwork") == ["yes"],
           "hugepaged-metrics.service has no capabilities and no network")
    out = os.path.join(d, "hugepaged.prom")
    r = subprocess.run(["unshare", "--net", "--", sandbox, "--caps", "", "--errno", "1", "--allow",
                        ",".join(sorted(syscall_allow_list(metrics_unit["SystemCallFilter"]))), "--unix-only", "--",
                        env_path("HUGEPAGECTL"), "--address", bus.address, "metrics", "--output", out],
                       capture_output=True, text=True, timeout=60)
    expect(r.returncode == 0 and os.path.exists(out), f"hugepagectl metrics --output works confined like "
           f"hugepaged-metrics.service ({r.stderr.strip()})")
    with open(out) as f:
        expect(f"pid=\"{w.pid}\"" in f.read(), "and writes the client's metrics")
    w.exit()
    log([line for line in daemon.log().splitlines() if "tracing" in line or "capabilities" in line])

    # Control: without bpf() in the filter the same daemon runs untraced.
    d2 = tempdir()
    bus2, daemon2 = start(d2, sandbox, caps, allow - {"bpf"}, errno)
    expect(bus2.get("Tracing") is False, "control: with bpf() filtered out, Tracing is false")
    expect("fault tracing off" in daemon2.log(), "and the daemon says tracing is off")


main(test)
