# SPDX-License-Identifier: LGPL-2.1-or-later
"""`meson install --destdir` puts everything in its conventional place, the
installed systemd units pass `systemd-analyze verify`, the sysusers entry
creates the hugepaged group, and every man page renders with `man -l`
without a warning."""

import json
import os
import re
import shutil

from dbustest import Skip, env_path, expect, log, main, run, tempdir


def test():
    build = env_path("HP_BUILD_ROOT")
    dest = tempdir()
    r = run(["meson", "install", "-C", build, "--destdir", dest, "--no-rebuild", "--quiet"], timeout=300)
    expect(r.returncode == 0, f"meson install --destdir succeeds {r.stderr[-500:]}")

    opts = {o["name"]: o["value"] for o in json.loads(run(["meson", "introspect", "--buildoptions", build],
                                                         check=True).stdout)}
    prefix = opts["prefix"]

    def under(d):
        return d if os.path.isabs(d) else os.path.join(prefix, d)
    unitdir = opts["systemdsystemunitdir"] or run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"],
                                                  check=True).stdout.strip()
    sysusersdir = opts["sysusersdir"] or run(["pkg-config", "--variable=sysusersdir", "systemd"],
                                             check=True).stdout.strip()
    dbusdir = opts["dbusdatadir"] or os.path.join(under(opts["datadir"]), "dbus-1")
    mandir = under(opts["mandir"])
    want = [
        (under(opts["sbindir"]), "hugepaged"),
        (under(opts["bindir"]), "hugepagectl"),
        (under(opts["bindir"]), "hugepaged-run"),
        (os.path.join(under(opts["sysconfdir"]), "hugepaged"), "hugepaged.conf"),
        (unitdir, "hugepaged.service"),
        (unitdir, "hugepaged.socket"),
        (unitdir, "hugepaged-metrics.service"),
        (unitdir, "hugepaged-metrics.timer"),
        (sysusersdir, "hugepaged.conf"),
        (os.path.join(dbusdir, "system.d"), "org.hugepaged1.conf"),
        (os.path.join(dbusdir, "system-services"), "org.hugepaged1.service"),
        (under(opts["includedir"]), "hugepaged.h"),
    ]
    man_pages = ["hugepaged.8", "hugepagectl.1", "hugepaged-run.1", "hugepaged.conf.5", "libhugepaged.3",
                 "org.hugepaged1.5"]
    if opts["man"] != "disabled" and shutil.which("scdoc"):
        want += [(os.path.join(mandir, "man" + p[-1]), p) for p in man_pages]
    for d, name in want:
        path = dest + os.path.join(d, name)
        expect(os.path.isfile(path), f"installed {os.path.join(d, name)}")
    expect(os.access(dest + os.path.join(under(opts["sbindir"]), "hugepaged"), os.X_OK), "hugepaged is executable")

    # the unit's ExecStart names the installed daemon
    with open(dest + os.path.join(unitdir, "hugepaged.service")) as f:
        service = f.read()
    daemon = os.path.join(under(opts["sbindir"]), "hugepaged")
    expect(f"ExecStart={daemon} " in service, f"ExecStart= runs {daemon}")

    # systemd-analyze verify: it wants ExecStart= to exist and the man pages
    # of Documentation= to be found, so check a copy whose ExecStart= points
    # into the destdir, with MANPATH there.
    if not shutil.which("systemd-analyze"):
        raise Skip("systemd-analyze is missing (Debian package systemd)")
    units = tempdir()
    shutil.copy(dest + os.path.join(unitdir, "hugepaged.socket"), units)
    with open(os.path.join(units, "hugepaged.service"), "w") as f:
        f.write(service.replace(f"ExecStart={daemon} ", f"ExecStart={dest}{daemon} "))
    env = dict(os.environ, MANPATH=dest + mandir + ":")
    ctl = os.path.join(under(opts["bindir"]), "hugepagectl")
    shutil.copy(dest + os.path.join(unitdir, "hugepaged-metrics.timer"), units)
    with open(dest + os.path.join(unitdir, "hugepaged-metrics.service")) as f:
        metrics = f.read()
    expect(f"ExecStart={ctl} --system metrics --output /var/lib/prometheus/node-exporter/hugepaged.prom" in metrics,
           "hugepaged-metrics.service writes node_exporter's textfile directory with the installed hugepagectl")
    with open(os.path.join(units, "hugepaged-metrics.service"), "w") as f:
        f.write(metrics.replace(f"ExecStart={ctl} ", f"ExecStart={dest}{ctl} "))
    r = run(["systemd-analyze", "verify", os.path.join(units, "hugepaged.service"),
             os.path.join(units, "hugepaged.socket"), os.path.join(units, "hugepaged-metrics.service"),
             os.path.join(units, "hugepaged-metrics.timer")], env=env)
    expect(r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "",
           f"systemd-analyze verify passes without a word {r.stdout}{r.stderr}")
    r = run(["systemd-analyze", "security", "--offline=yes", os.path.join(units, "hugepaged.service")], env=env)
    log(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr.strip())
    # 2.3 with systemd 252: the unit's exposure before it let the tracer load
    # (CAP_BPF, CAP_PERFMON, bpf()); allowing that must not make it worse.
    m = re.search(r"Overall exposure level for hugepaged.service: ([0-9.]+)", r.stdout)
    expect(m and float(m.group(1)) <= 2.3,
           f"systemd-analyze security: exposure {m.group(1) if m else '?'} is at most 2.3")

    if shutil.which("systemd-sysusers"):
        root = tempdir()
        os.makedirs(os.path.join(root, "etc"))
        r = run(["systemd-sysusers", f"--root={root}", dest + os.path.join(sysusersdir, "hugepaged.conf")])
        with open(os.path.join(root, "etc", "group")) as f:
            group = f.read()
        expect(r.returncode == 0 and group.startswith("hugepaged:x:"), "the sysusers entry creates group hugepaged")

    if opts["man"] != "disabled" and shutil.which("scdoc"):
        if not shutil.which("man"):
            raise Skip("man is missing (Debian package man-db)")
        for p in man_pages:
            path = dest + os.path.join(mandir, "man" + p[-1], p)
            r = run(["man", "--warnings", "-l", path], env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8",
                                                                   MAN_KEEP_FORMATTING="0"))
            expect(r.returncode == 0 and r.stderr == "" and len(r.stdout) > 500,
                   f"man -l {p} renders without warnings {r.stderr}")
        with open(dest + os.path.join(mandir, "man5", "org.hugepaged1.5")) as f:
            page = f.read()
        xml = run([env_path("HUGEPAGED"), "--bus-introspect"], check=True).stdout
        for member in ("ListClients", "GetClientStats", "SetPolicy", "Reload", "FaultsServed", "HugetlbPrefilled",
                       "ManagedBytes", "AnonymousBytes", "CoveragePermille",
                       "ClientAdded"):
            expect(member in xml and member in page, f"org.hugepaged1(5) lists {member} like --bus-introspect")


main(test)
