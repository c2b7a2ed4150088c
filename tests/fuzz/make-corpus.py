#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write the seed corpus of the fuzz harnesses (tests/fuzz/corpus/): one
file per input, named after what it is. Run it from anywhere after changing
the protocol or the configuration keys, and commit the result.

protocol/  every request type well-formed, each of the daemon's own types,
           and the classic malformed ones (short, wrong magic, version,
           type, length, reserved bits, bad fields)
config/    the shipped hugepaged.conf, every key set, per-program sections,
           units and percentages, and lines with errors
"""

import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC, VERSION = 0x48504744, 1
HDR = struct.Struct("=IHHIIiI")
(HELLO, HELLO_REPLY, UFFD, REGISTER, UNREGISTER, SET_POLICY, GET_STATS, STATS_REPLY, REPLY, ERROR,
 SYNC, HUGETLB_RESERVE, INHERIT, SHMEM_CREATE) = range(1, 15)
SIZES = {HELLO: 32, HELLO_REPLY: 40, UFFD: 24, REGISTER: 48, UNREGISTER: 48, SET_POLICY: 32, GET_STATS: 24,
         STATS_REPLY: 24 + 14 * 8, REPLY: 24, ERROR: 24 + 200, SYNC: 48, HUGETLB_RESERVE: 40, INHERIT: 24,
         SHMEM_CREATE: 40}


def hdr(t, length, seq=1, status=0, magic=MAGIC, version=VERSION, reserved=0):
    return HDR.pack(magic, version, t, length, seq, status, reserved)


def rng(t, addr, length, backend=0, threshold=0):
    return hdr(t, 48) + struct.pack("=QQII", addr, length, backend, threshold)


def protocol():
    a = 0x7f0000000000
    return {
        "hello": hdr(HELLO, 32) + bytes(8),
        "hello-flags": hdr(HELLO, 32) + struct.pack("=II", 1, 0),
        "uffd": hdr(UFFD, 24),
        "register": rng(REGISTER, a, 2 << 20),
        "register-threshold": rng(REGISTER, a, 4 << 20, 0, 128),
        "register-threshold-513": rng(REGISTER, a, 4 << 20, 0, 513),
        "register-backend": rng(REGISTER, a, 4 << 20, 3, 0),
        "register-misaligned": rng(REGISTER, a + 1, 2 << 20),
        "register-kernel": rng(REGISTER, 0xffff888000000000, 2 << 20),
        "register-wrap": rng(REGISTER, 0xfffffffffffff000, 0x2000),
        "unregister": rng(UNREGISTER, a, 2 << 20),
        "sync": rng(SYNC, a, 8 << 20),
        "hugetlb-reserve": hdr(HUGETLB_RESERVE, 40) + struct.pack("=QII", 16, 0, 0),
        "hugetlb-reserve-shared": hdr(HUGETLB_RESERVE, 40) + struct.pack("=QII", 16, 1, 0),
        "hugetlb-reserve-huge": hdr(HUGETLB_RESERVE, 40) + struct.pack("=QII", 1 << 40, 2, 0),
        "register-hugetlb": rng(REGISTER, a, 4 << 20, 1, 0),
        "inherit": hdr(INHERIT, 24),
        "shmem-create": hdr(SHMEM_CREATE, 40) + struct.pack("=QII", 64 << 20, 0, 0),
        "shmem-create-zero": hdr(SHMEM_CREATE, 40) + struct.pack("=QII", 0, 0, 0),
        "shmem-create-huge": hdr(SHMEM_CREATE, 40) + struct.pack("=QII", 1 << 62, 0, 0),
        "shmem-create-flags": hdr(SHMEM_CREATE, 40) + struct.pack("=QII", 2 << 20, 1, 1),
        "register-shmem": rng(REGISTER, a, 8 << 20, 2, 0),
        "register-shmem-misaligned": rng(REGISTER, a + 4096, 8 << 20, 2, 0),
        "policy": hdr(SET_POLICY, 32) + struct.pack("=II", 64, 1),
        "policy-bad": hdr(SET_POLICY, 32) + struct.pack("=II", 0, 0x80),
        "get-stats": hdr(GET_STATS, 24),
        "reply-types": hdr(REPLY, 24),
        "error-type": hdr(ERROR, 224) + b"text" + bytes(196),
        "stats-reply-type": hdr(STATS_REPLY, SIZES[STATS_REPLY]) + bytes(112),
        "hello-reply-type": hdr(HELLO_REPLY, 40) + bytes(16),
        "short": hdr(GET_STATS, 24)[:11],
        "bad-magic": hdr(GET_STATS, 24, magic=0x12345678),
        "bad-version": hdr(GET_STATS, 24, version=2),
        "bad-type": hdr(200, 24),
        "bad-length": hdr(GET_STATS, 25),
        "reserved": hdr(GET_STATS, 24, reserved=1),
        "wrong-size": hdr(REGISTER, 24),
    }


def config():
    with open(os.path.join(HERE, "..", "..", "conf", "hugepaged.conf"), "rb") as f:
        shipped = f.read()
    return {
        "shipped.conf": shipped,
        "all-keys.conf": b"""[Daemon]
Socket=/run/hugepaged/hugepaged.sock
Workers=4
LogLevel=debug
AllowedUsers=alice 1000, bob
AllowedGroups=hugepaged users
AdminUsers=root
AdminGroups=wheel

[Policy]
Threshold=12.5%
MinSize=2M
DensePrediction=no
FaultWindow=256K

[Pool]
HugetlbMaxSize=25%

[Budgets]
MaxClients=100
MaxRangesPerClient=1000
MaxConnectionsPerUser=10
HandshakeTimeoutSec=5
MaxRequestsPerSecond=0
MaxHugePerClient=1G
""",
        "programs.conf": b"""[Program:redis-server]
Threshold=8
DensePrediction=no
FaultWindow=16

[program:postgres]
Threshold=100%

[Program:redis-server]
FaultWindow=1
""",
        "errors.conf": b"""[Policy]
Threshold=513
MinSize=3K
FaultWindow=0
DensePrediction=maybe
[Budgets]
MaxClients=-1
HandshakeTimeoutSec=99999
MaxRequestsPerSecond=1e3
[Nope]
Key=value
[Daemon]
Socket=relative/path
AllowedUsers=-bad
LogLevel=loud
[Program:]
Threshold=1
[Program:a/b]
Threshold=1
no equals sign here
[unterminated
""",
        "units.conf": b"[Pool]\nHugetlbMaxSize=4GiB\n[Budgets]\nMaxHugePerClient=2048M\n"
                      b"[Policy]\nMinSize=0\nThreshold=2M\nFaultWindow=4096\n",
        "comments.conf": b"; comment\n# comment\n\n  [Policy]  \n  Threshold = 64 ; inline\nMinSize=\n",
        "long-line.conf": b"[Daemon]\nAllowedUsers=" + b"u," * 400 + b"\n",
    }


def write(name, entries):
    d = os.path.join(HERE, "corpus", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for fname, data in entries.items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("protocol", protocol())
    write("config", config())
