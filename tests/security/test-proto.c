/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-proto.c: daemon/core/proto.c, the decoder of client requests, with the
 * hostile input of tests/security/hp-hostile but no daemon: every request
 * type with good and bad fields, the daemon's own types sent back, and
 * random packets (whatever passes must be a well-formed request).
 */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hugepaged-protocol.h"
#include "proto.h"

static char why[HP_ERROR_TEXT];

static int check(const void *buf, size_t len)
{
        memset(why, 'x', sizeof(why));
        int r = proto_check_request(buf, len, why, sizeof(why));
        assert(memchr(why, '\0', sizeof(why)));         /* always terminated */
        assert(r > 0 ? why[0] == '\0' : why[0] != '\0'); /* a reason for every refusal */
        return r;
}

static int range(enum hp_msg_type type, uint64_t addr, uint64_t len, uint32_t backend, uint32_t threshold)
{
        struct hp_range_req r = { .addr = addr, .length = len, .backend = backend, .threshold = threshold };
        hp_header_init(&r.hdr, type, sizeof(r), 1, 0);
        return check(&r, sizeof(r));
}

int main(void)
{
        const uint64_t a = 0x7f0000000000ull, M2 = 2ull << 20;

        /* header errors keep hp_msg_check's codes */
        struct hp_header h;
        hp_header_init(&h, HP_MSG_GET_STATS, sizeof(h), 1, 0);
        assert(check(&h, sizeof(h)) == HP_MSG_GET_STATS);
        assert(check(&h, sizeof(h) - 1) == -EBADMSG);
        assert(check(NULL, 0) == -EBADMSG);
        h.version = 9;
        assert(check(&h, sizeof(h)) == -EPROTONOSUPPORT);
        assert(strstr(why, "version 9"));
        hp_header_init(&h, 77, sizeof(h), 1, 0);
        assert(check(&h, sizeof(h)) == -EOPNOTSUPP);
        hp_header_init(&h, HP_MSG_REGISTER, sizeof(h), 1, 0);
        assert(check(&h, sizeof(h)) == -EMSGSIZE);

        /* the daemon's own types are not requests */
        char buf[HP_MSG_MAX] = { 0 };
        for (unsigned t = HP_MSG_HELLO_REPLY; t < _HP_MSG_MAX; t++) {
                if (t != HP_MSG_HELLO_REPLY && t != HP_MSG_STATS_REPLY && t != HP_MSG_REPLY && t != HP_MSG_ERROR)
                        continue;
                hp_header_init((void *)buf, t, (uint32_t)hp_msg_size((uint16_t)t), 1, 0);
                assert(check(buf, hp_msg_size((uint16_t)t)) == -EPROTO);
        }

        /* hello */
        struct hp_hello hello = { 0 };
        hp_header_init(&hello.hdr, HP_MSG_HELLO, sizeof(hello), 1, 0);
        assert(check(&hello, sizeof(hello)) == HP_MSG_HELLO);
        hello.flags = 2;
        assert(check(&hello, sizeof(hello)) == -EINVAL);
        hello.flags = 0;
        hello.reserved = 1;
        assert(check(&hello, sizeof(hello)) == -EINVAL);

        /* ranges */
        assert(range(HP_MSG_REGISTER, a, M2, 0, 0) == HP_MSG_REGISTER);
        assert(range(HP_MSG_REGISTER, a, M2, 0, 512) == HP_MSG_REGISTER);
        assert(range(HP_MSG_REGISTER, a, M2, 0, 513) == -ERANGE);
        assert(range(HP_MSG_REGISTER, a, M2, 7, 0) == -EOPNOTSUPP);
        /* hugetlb ranges: whole 2 MiB pages, no threshold */
        assert(range(HP_MSG_REGISTER, a, M2, HP_RANGE_HUGETLB, 0) == HP_MSG_REGISTER);
        assert(range(HP_MSG_REGISTER, a, 3 * M2, HP_RANGE_HUGETLB, 0) == HP_MSG_REGISTER);
        assert(range(HP_MSG_REGISTER, a + 4096, M2, HP_RANGE_HUGETLB, 0) == -EINVAL);
        assert(range(HP_MSG_REGISTER, a, M2 + 4096, HP_RANGE_HUGETLB, 0) == -EINVAL);
        assert(range(HP_MSG_REGISTER, a, M2, HP_RANGE_HUGETLB, 64) == -EINVAL);
        assert(range(HP_MSG_REGISTER, 0, M2, HP_RANGE_HUGETLB, 0) == -ERANGE);
        assert(range(HP_MSG_REGISTER, a + 1, M2, 0, 0) == -EINVAL);
        assert(range(HP_MSG_REGISTER, a, 100, 0, 0) == -EINVAL);
        assert(range(HP_MSG_REGISTER, a, 0, 0, 0) == -EINVAL);
        assert(range(HP_MSG_REGISTER, 0, M2, 0, 0) == -ERANGE);
        assert(range(HP_MSG_REGISTER, 0xffff888000000000ull, M2, 0, 0) == -ERANGE);
        assert(range(HP_MSG_REGISTER, ~0xfffull, 0x2000, 0, 0) == -ERANGE);
        /* unregister and sync ignore backend and threshold */
        assert(range(HP_MSG_UNREGISTER, a, M2, 9, 9999) == HP_MSG_UNREGISTER);
        assert(range(HP_MSG_SYNC, a, M2, 9, 9999) == HP_MSG_SYNC);
        assert(range(HP_MSG_SYNC, a + 8, M2, 0, 0) == -EINVAL);
        assert(range(HP_MSG_UNREGISTER, 0xffffffff81000000ull, M2, 0, 0) == -ERANGE);

        /* hugetlb pool requests */
        struct hp_hugetlb_req hr = { .pages = 256 };
        hp_header_init(&hr.hdr, HP_MSG_HUGETLB_RESERVE, sizeof(hr), 1, 0);
        assert(check(&hr, sizeof(hr)) == HP_MSG_HUGETLB_RESERVE);
        hr.pages = 0;   /* cancels a request */
        assert(check(&hr, sizeof(hr)) == HP_MSG_HUGETLB_RESERVE);
        hr.pages = HP_HUGETLB_PAGES_MAX;
        assert(check(&hr, sizeof(hr)) == HP_MSG_HUGETLB_RESERVE);
        hr.pages = HP_HUGETLB_PAGES_MAX + 1;
        assert(check(&hr, sizeof(hr)) == -ERANGE);
        hr.pages = ~0ull;
        assert(check(&hr, sizeof(hr)) == -ERANGE);
        hr.pages = 1;
        hr.flags = HP_HUGETLB_SHARED;           /* a shared mapping's pages */
        assert(check(&hr, sizeof(hr)) == HP_MSG_HUGETLB_RESERVE);
        hr.flags = 2;                           /* unknown */
        assert(check(&hr, sizeof(hr)) == -EINVAL);
        hr.flags = 0;
        hr.reserved = 1;
        assert(check(&hr, sizeof(hr)) == -EINVAL);
        hr.reserved = 0;
        assert(check(&hr, sizeof(hr) - 1) == -EBADMSG);

        /* shared file requests */
        struct hp_shmem_req sr = { .length = 1 };
        hp_header_init(&sr.hdr, HP_MSG_SHMEM_CREATE, sizeof(sr), 1, 0);
        assert(check(&sr, sizeof(sr)) == HP_MSG_SHMEM_CREATE);
        sr.length = HP_SHMEM_LENGTH_MAX;
        assert(check(&sr, sizeof(sr)) == HP_MSG_SHMEM_CREATE);
        sr.length = 0;
        assert(check(&sr, sizeof(sr)) == -ERANGE);
        sr.length = ~0ull;
        assert(check(&sr, sizeof(sr)) == -ERANGE);
        sr.length = 1;
        sr.flags = 1;
        assert(check(&sr, sizeof(sr)) == -EINVAL);
        sr.flags = 0;
        sr.reserved = 1;
        assert(check(&sr, sizeof(sr)) == -EINVAL);
        sr.reserved = 0;
        assert(check(&sr, sizeof(sr) - 1) == -EBADMSG);

        /* policy */
        struct hp_policy p = { .threshold = 64 };
        hp_header_init(&p.hdr, HP_MSG_SET_POLICY, sizeof(p), 1, 0);
        assert(check(&p, sizeof(p)) == HP_MSG_SET_POLICY);
        p.flags = HP_POLICY_NO_DENSE_PREDICT;
        assert(check(&p, sizeof(p)) == HP_MSG_SET_POLICY);
        p.flags = 0x10;
        assert(check(&p, sizeof(p)) == -ERANGE);
        p.flags = 0;
        p.threshold = 0;
        assert(check(&p, sizeof(p)) == -ERANGE);
        p.threshold = 513;
        assert(check(&p, sizeof(p)) == -ERANGE);

        /* a reason that does not fit is cut, never overflows; why may be NULL */
        char small[8];
        assert(proto_check_request(&p, sizeof(p), small, sizeof(small)) == -ERANGE && strlen(small) == 7);
        assert(proto_check_request(&p, sizeof(p), NULL, 0) == -ERANGE);

        /* random packets: what passes is a request of the right size */
        srand(7);
        for (int i = 0; i < 300000; i++) {
                size_t n = (size_t)rand() % (sizeof(buf) + 1);
                for (size_t k = 0; k < n; k++)
                        buf[k] = (char)rand();
                if (n >= sizeof(struct hp_header) && (rand() & 1)) {
                        unsigned t = 1 + (unsigned)rand() % (_HP_MSG_MAX + 1);
                        if (hp_msg_size((uint16_t)t) && (rand() & 1))
                                n = hp_msg_size((uint16_t)t);
                        hp_header_init((void *)buf, t, (uint32_t)n, 1, 0);
                }
                int t = check(buf, n);
                if (t > 0)
                        assert(n == hp_msg_size((uint16_t)t) && t != HP_MSG_REPLY && t != HP_MSG_ERROR &&
                               t != HP_MSG_HELLO_REPLY && t != HP_MSG_STATS_REPLY);
        }
        printf("proto: ok\n");
        return 0;
}
