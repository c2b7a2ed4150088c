/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * proto.h: the daemon's decoder of client requests. One call checks a
 * received packet completely: the header (hp_msg_check), that the type is a
 * request, and every field of that type. What it returns is all client.c
 * needs to either act or answer with an error; the text is for the client.
 *
 * Pure: no I/O, no allocation, no state; fuzzed (tests/fuzz) and
 * unit-tested with malformed input.
 */
#ifndef HP_PROTO_H
#define HP_PROTO_H

#include <stddef.h>

/*
 * Check one packet of `len` bytes from a client. Returns its type (> 0,
 * enum hp_msg_type) when every field is valid, else -errno with a
 * NUL-terminated reason in why (why may be NULL):
 *   -EBADMSG -EPROTONOSUPPORT -EOPNOTSUPP -EMSGSIZE  as hp_msg_check
 *   -EPROTO   a daemon-to-client type (a reply) sent as a request
 *   -EINVAL   unknown flags, reserved fields set, misaligned or empty range
 *   -ERANGE   addresses outside user space or wrapping, threshold out of range
 *   -EOPNOTSUPP  (also) an unknown backend
 * A range that passes still has to be checked against the client's memory.
 */
int proto_check_request(const void *buf, size_t len, char *why, size_t whylen);

#endif
