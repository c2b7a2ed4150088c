/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * proto.c: validation of every request a client can send (see proto.h).
 * Must never read outside [buf, buf + len), trust a length or count before
 * checking it, or do anything but compute: it is the first code to touch
 * bytes from a client, and libFuzzer runs it millions of times.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hugepaged-protocol.h"
#include "proto.h"

static int fail(char *why, size_t whylen, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *why, size_t whylen, int status, const char *fmt, ...)
{
        va_list ap;

        if (why && whylen) {
                va_start(ap, fmt);
                vsnprintf(why, whylen, fmt, ap);
                va_end(ap);
        }
        return status;
}

static int check_range(const struct hp_range_req *req, uint32_t threshold, char *why, size_t whylen)
{
        int r = hp_range_check(req->addr, req->length, threshold);
        if (r == -EINVAL)
                return fail(why, whylen, r, "bad range %#" PRIx64 "+%#" PRIx64 ": empty or not page aligned",
                            req->addr, req->length);
        if (r < 0)
                return fail(why, whylen, r, "bad range %#" PRIx64 "+%#" PRIx64 " threshold %" PRIu32
                            ": outside user space, wrapping, or threshold above %u", req->addr, req->length,
                            threshold, HP_REGION_PAGES);
        return 0;
}

int proto_check_request(const void *buf, size_t len, char *why, size_t whylen)
{
        struct hp_header h;
        int type, r;

        if (why && whylen)
                why[0] = '\0';
        type = hp_msg_check(buf, len);
        if (type < 0) {
                if (len >= sizeof(h))
                        memcpy(&h, buf, sizeof(h));
                switch (type) {
                case -EPROTONOSUPPORT:
                        return fail(why, whylen, type, "protocol version %u not supported (daemon speaks %u)",
                                    h.version, HP_VERSION);
                case -EOPNOTSUPP:
                        return fail(why, whylen, type, "unknown message type %u", h.type);
                case -EMSGSIZE:
                        return fail(why, whylen, type, "message type %u has wrong size %zu", h.type, len);
                default:
                        return fail(why, whylen, type, "malformed message (%zu bytes)", len);
                }
        }

        /* hp_msg_check guarantees len == the size of the type's struct;
         * copy it out: buf need not be aligned for it. */
        switch (type) {
        case HP_MSG_HELLO: {
                struct hp_hello m;
                memcpy(&m, buf, sizeof(m));
                if (m.flags != 0 || m.reserved != 0)
                        return fail(why, whylen, -EINVAL, "unknown hello flags %#" PRIx32 " or reserved field set", m.flags);
                return type;
        }
        case HP_MSG_UFFD:
        case HP_MSG_GET_STATS:
        case HP_MSG_INHERIT:
                return type;
        case HP_MSG_REGISTER: {
                struct hp_range_req m;
                memcpy(&m, buf, sizeof(m));
                r = check_range(&m, m.threshold, why, whylen);
                if (r < 0)
                        return r;
                r = hp_range_kind_check(m.backend, m.addr, m.length, m.threshold);
                if (r == -EOPNOTSUPP)
                        return fail(why, whylen, r, "backend %" PRIu32 " is not supported", m.backend);
                if (r < 0)
                        return fail(why, whylen, r, "range %#" PRIx64 "+%#" PRIx64 " threshold %" PRIu32
                                    " does not fit backend %" PRIu32 " (hugetlb: whole 2 MiB pages, no "
                                    "threshold; shmem: starts on 2 MiB)",
                                    m.addr, m.length, m.threshold, m.backend);
                return type;
        }
        case HP_MSG_HUGETLB_RESERVE: {
                struct hp_hugetlb_req m;
                memcpy(&m, buf, sizeof(m));
                r = hp_hugetlb_req_check(m.pages, m.flags, m.reserved);
                if (r < 0)
                        return fail(why, whylen, r, "hugetlb request of %" PRIu64 " pages flags %#" PRIx32
                                    ": unknown flags, reserved field set or more than %llu pages",
                                    m.pages, m.flags, (unsigned long long)HP_HUGETLB_PAGES_MAX);
                return type;
        }
        case HP_MSG_SHMEM_CREATE: {
                struct hp_shmem_req m;
                memcpy(&m, buf, sizeof(m));
                r = hp_shmem_req_check(m.length, m.flags, m.reserved);
                if (r < 0)
                        return fail(why, whylen, r, "shared file request of %" PRIu64 " bytes flags %#" PRIx32
                                    ": flags or reserved field set, empty, or more than %llu bytes",
                                    m.length, m.flags, (unsigned long long)HP_SHMEM_LENGTH_MAX);
                return type;
        }
        case HP_MSG_UNREGISTER:
        case HP_MSG_SYNC: {
                /* backend and threshold mean nothing here and are ignored */
                struct hp_range_req m;
                memcpy(&m, buf, sizeof(m));
                r = check_range(&m, 0, why, whylen);
                return r < 0 ? r : type;
        }
        case HP_MSG_SET_POLICY: {
                struct hp_policy m;
                memcpy(&m, buf, sizeof(m));
                if (m.threshold < 1 || m.threshold > HP_REGION_PAGES || (m.flags & ~HP_POLICY_FLAGS_ALL))
                        return fail(why, whylen, -ERANGE, "threshold %" PRIu32 " outside 1..%u or unknown flags %#" PRIx32,
                                    m.threshold, HP_REGION_PAGES, m.flags);
                return type;
        }
        default:
                /* HELLO_REPLY, STATS_REPLY, REPLY, ERROR: the daemon's to send */
                return fail(why, whylen, -EPROTO, "message type %d is not a request", type);
        }
}
