#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Splice the D-Bus interfaces of `hugepaged --bus-introspect` into the
org.hugepaged1(5) man page, as the compact listing systemd's D-Bus man pages
use, so that the page cannot drift from the code.

usage: introspect-to-idl.py INTROSPECTION.xml TEMPLATE.scd.in OUTPUT.scd
"""
import sys
import xml.etree.ElementTree as ET

PATHS = {
    "org.hugepaged1.Manager": "/org/hugepaged1",
    "org.hugepaged1.Client": "/org/hugepaged1/client/PID",
}


def args(el, with_direction):
    out = []
    for a in el.findall("arg"):
        d = a.get("direction", "in") + " " if with_direction else ""
        out.append(f"{d}{a.get('type')} {a.get('name', '')}".rstrip())
    return out


def listing(xml):
    root = ET.fromstring(xml)
    lines = []
    for iface in root.findall("interface"):
        name = iface.get("name")
        lines.append(f"node {PATHS.get(name, '/')} {{")
        lines.append(f"  interface {name} {{")
        methods = iface.findall("method")
        if methods:
            lines.append("    methods:")
            for m in methods:
                a = args(m, True)
                head = f"      {m.get('name')}("
                if not a:
                    lines.append(head + ");")
                    continue
                pad = " " * len(head)
                for i, x in enumerate(a):
                    end = ");" if i == len(a) - 1 else ","
                    lines.append((head if i == 0 else pad) + x + end)
        signals = iface.findall("signal")
        if signals:
            lines.append("    signals:")
            for s in signals:
                lines.append(f"      {s.get('name')}({', '.join(args(s, False))});")
        props = iface.findall("property")
        if props:
            lines.append("    properties:")
            for p in props:
                const = any(a.get("value") == "const" for a in p.findall("annotation"))
                access = "readonly" if p.get("access") == "read" else "readwrite"
                lines.append(f"      {access} {p.get('type')} {p.get('name')}{' (constant)' if const else ''};")
        lines.append("  };")
        lines.append("};")
    return "\n".join(lines)


def main():
    xml_path, template_path, out_path = sys.argv[1:4]
    with open(xml_path) as f:
        text = listing(f.read())
    with open(template_path) as f:
        template = f.read()
    if "@INTERFACES@" not in template:
        sys.exit(f"{template_path}: no @INTERFACES@ placeholder")
    with open(out_path, "w") as f:
        f.write(template.replace("@INTERFACES@", text))


if __name__ == "__main__":
    main()
