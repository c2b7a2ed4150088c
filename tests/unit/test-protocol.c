/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for the protocol decoder (include/hugepaged-protocol.h), malformed input included. */
#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hugepaged-protocol.h"

int main(void)
{
        struct hp_range_req req;
        char buf[HP_MSG_MAX];

        hp_header_init(&req.hdr, HP_MSG_REGISTER, sizeof(req), 7, 0);
        req.addr = 2ull << 20;
        req.length = 4ull << 20;
        req.backend = HP_RANGE_ANON;
        req.threshold = 0;
        assert(hp_msg_check(&req, sizeof(req)) == HP_MSG_REGISTER);

        /* truncated: every shorter length is rejected */
        for (size_t n = 0; n < sizeof(req); n++)
                assert(hp_msg_check(&req, n) < 0);
        assert(hp_msg_check(NULL, 100) == -EBADMSG);
        /* header length disagrees with the packet */
        memcpy(buf, &req, sizeof(req));
        assert(hp_msg_check(buf, sizeof(req) + 8) == -EBADMSG);
        /* bad magic, reserved bits */
        struct hp_range_req bad = req;
        bad.hdr.magic ^= 1;
        assert(hp_msg_check(&bad, sizeof(bad)) == -EBADMSG);
        bad = req;
        bad.hdr.reserved = 1;
        assert(hp_msg_check(&bad, sizeof(bad)) == -EBADMSG);
        /* wrong version */
        bad = req;
        bad.hdr.version = HP_VERSION + 1;
        assert(hp_msg_check(&bad, sizeof(bad)) == -EPROTONOSUPPORT);
        /* unknown types */
        bad = req;
        bad.hdr.type = 0;
        assert(hp_msg_check(&bad, sizeof(bad)) == -EOPNOTSUPP);
        bad.hdr.type = _HP_MSG_MAX;
        assert(hp_msg_check(&bad, sizeof(bad)) == -EOPNOTSUPP);
        bad.hdr.type = 0xffff;
        assert(hp_msg_check(&bad, sizeof(bad)) == -EOPNOTSUPP);
        /* right header, size of another type */
        struct hp_header h;
        hp_header_init(&h, HP_MSG_REGISTER, sizeof(h), 1, 0);
        assert(hp_msg_check(&h, sizeof(h)) == -EMSGSIZE);
        hp_header_init(&h, HP_MSG_GET_STATS, sizeof(h), 1, 0);
        assert(hp_msg_check(&h, sizeof(h)) == HP_MSG_GET_STATS);
        /* every declared type has a size that fits a packet */
        for (unsigned t = 1; t < _HP_MSG_MAX; t++)
                assert(hp_msg_size((uint16_t)t) >= sizeof(struct hp_header) && hp_msg_size((uint16_t)t) <= HP_MSG_MAX);

        /* random packets never crash the decoder and are accepted only if well-formed */
        srand(42);
        for (int i = 0; i < 200000; i++) {
                size_t n = (size_t)rand() % sizeof(buf);
                for (size_t k = 0; k < n; k++)
                        buf[k] = (char)rand();
                if (n >= sizeof(struct hp_header) && (rand() & 1)) {
                        struct hp_header *hh = (void *)buf;
                        hh->magic = HP_MAGIC;
                        hh->version = HP_VERSION;
                        hh->reserved = 0;
                        hh->length = (uint32_t)n;
                        hh->type = (uint16_t)(rand() % (_HP_MSG_MAX + 2));
                }
                int t = hp_msg_check(buf, n);
                if (t > 0)
                        assert(n == hp_msg_size((uint16_t)t));
        }

        /* field validation */
        assert(hp_range_check(2ull << 20, 4096, 0) == 0);
        assert(hp_range_check(2ull << 20, 0, 0) == -EINVAL);
        assert(hp_range_check((2ull << 20) + 1, 4096, 0) == -EINVAL);
        assert(hp_range_check(2ull << 20, 4095, 0) == -EINVAL);
        assert(hp_range_check(0, 4096, 0) == -ERANGE);
        assert(hp_range_check(~0ull & ~4095ull, 8192, 0) == -ERANGE);  /* wraps */
        assert(hp_range_check(HP_USER_ADDR_MAX, 4096, 0) == -ERANGE);
        assert(hp_range_check(2ull << 20, 4096, 513) == -ERANGE);
        assert(hp_range_check(2ull << 20, 4096, 512) == 0);
        /* hugetlb: the pool request and whole 2 MiB ranges */
        struct hp_hugetlb_req hr = { .pages = 4 };
        hp_header_init(&hr.hdr, HP_MSG_HUGETLB_RESERVE, sizeof(hr), 3, 0);
        assert(hp_msg_check(&hr, sizeof(hr)) == HP_MSG_HUGETLB_RESERVE);
        assert(hp_msg_check(&hr, sizeof(hr) - 8) < 0);
        assert(hp_hugetlb_req_check(0, 0, 0) == 0);
        assert(hp_hugetlb_req_check(HP_HUGETLB_PAGES_MAX, 0, 0) == 0);
        assert(hp_hugetlb_req_check(HP_HUGETLB_PAGES_MAX + 1, 0, 0) == -ERANGE);
        assert(hp_hugetlb_req_check(~0ull, 0, 0) == -ERANGE);
        assert(hp_hugetlb_req_check(1, HP_HUGETLB_SHARED, 0) == 0);
        assert(hp_hugetlb_req_check(1, 2, 0) == -EINVAL);
        assert(hp_hugetlb_req_check(1, 0, 1) == -EINVAL);
        assert(hp_hugetlb_range_check(2ull << 20, 2ull << 20, 0) == 0);
        assert(hp_hugetlb_range_check(4ull << 20, 6ull << 20, 0) == 0);
        assert(hp_hugetlb_range_check((2ull << 20) + 4096, 2ull << 20, 0) == -EINVAL);
        assert(hp_hugetlb_range_check(2ull << 20, 4096, 0) == -EINVAL);
        assert(hp_hugetlb_range_check(2ull << 20, 2ull << 20, 1) == -EINVAL);
        /* shmem: the file request, and ranges that start on 2 MiB */
        struct hp_shmem_req sr = { .length = 4096 };
        hp_header_init(&sr.hdr, HP_MSG_SHMEM_CREATE, sizeof(sr), 4, 0);
        assert(hp_msg_check(&sr, sizeof(sr)) == HP_MSG_SHMEM_CREATE);
        assert(hp_msg_check(&sr, sizeof(sr) - 8) < 0);
        assert(hp_shmem_req_check(1, 0, 0) == 0);
        assert(hp_shmem_req_check(HP_SHMEM_LENGTH_MAX, 0, 0) == 0);
        assert(hp_shmem_req_check(0, 0, 0) == -ERANGE);
        assert(hp_shmem_req_check(HP_SHMEM_LENGTH_MAX + 1, 0, 0) == -ERANGE);
        assert(hp_shmem_req_check(1, 1, 0) == -EINVAL);
        assert(hp_shmem_req_check(1, 0, 1) == -EINVAL);
        assert(hp_range_kind_check(HP_RANGE_SHMEM, 2ull << 20, 4096, 64) == 0);
        assert(hp_range_kind_check(HP_RANGE_SHMEM, (2ull << 20) + 4096, 2ull << 20, 0) == -EINVAL);
        assert(hp_range_kind_check(HP_RANGE_KINDS, 2ull << 20, 2ull << 20, 0) == -EOPNOTSUPP);
        printf("protocol: ok\n");
        return 0;
}
