#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Requests queued while the daemon was busy are all answered.

The daemon handles at most a few requests per client per wake-up (fairness),
and io_uring's multishot poll reports readiness edges, not levels: requests
left queued must not wait for some later event. The daemon is stopped
(SIGSTOP) while a client queues 200 requests on its socket, then continued;
every request must get its reply, with the request's sequence number.
"""

import fcntl
import os
import signal
import socket
import struct

import hptest

MAGIC = 0x48504744
HDR = struct.Struct("=IHHIIiI")         # struct hp_header
MSG_HELLO, MSG_HELLO_REPLY, MSG_UFFD, MSG_GET_STATS, MSG_STATS_REPLY = 1, 2, 3, 7, 8
USERFAULTFD_IOC_NEW = 0xAA00
N = 200


def header(mtype, length, seq):
    return HDR.pack(MAGIC, 1, mtype, length, seq, 0, 0)


def test(ctx):
    d = ctx.daemon()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(10)
    s.connect(d.socket)
    s.send(header(MSG_HELLO, HDR.size + 8, 1) + bytes(8))
    msg, fds, _, _ = socket.recv_fds(s, 512, 4)
    ctx.require(HDR.unpack_from(msg)[2] == MSG_HELLO_REPLY and len(fds) == 1,
                "handshake: hello reply carries the userfaultfd device")
    uffd = fcntl.ioctl(fds[0], USERFAULTFD_IOC_NEW, os.O_CLOEXEC | os.O_NONBLOCK)
    socket.send_fds(s, [header(MSG_UFFD, HDR.size, 2)], [uffd])
    os.close(uffd)
    os.close(fds[0])
    ctx.require(HDR.unpack_from(s.recv(512))[5] == 0, "handshake: uffd accepted")

    # Non-blocking sends: poll() calls a datagram socket writable only while
    # the peer's queue is short, but the queue itself takes far more.
    sent = 0
    s.setblocking(False)
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        for i in range(N):
            s.send(header(MSG_GET_STATS, HDR.size, 100 + i))
            sent += 1
    except BlockingIOError:
        pass
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    s.settimeout(10)
    ctx.require(sent > 64, f"more requests queued than the daemon takes per wake-up ({sent})")
    seqs = []
    try:
        while len(seqs) < sent:
            h = HDR.unpack_from(s.recv(512))
            if h[2] == MSG_STATS_REPLY:
                seqs.append(h[4])
    except socket.timeout:
        pass
    ctx.expect(len(seqs) == sent, f"all {sent} queued requests answered (got {len(seqs)})")
    ctx.expect(seqs == list(range(100, 100 + len(seqs))), "replies in request order with their seq")
    s.close()


if __name__ == "__main__":
    hptest.main(test)
