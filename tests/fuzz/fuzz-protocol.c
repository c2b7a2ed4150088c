/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-protocol.c: libFuzzer harness for the first code that reads a
 * client's bytes: hp_msg_check and hp_range_check
 * (include/hugepaged-protocol.h) and daemon/core/proto.c, which checks every
 * request completely. Besides the sanitizers, it asserts what client.c
 * relies on: an accepted packet is a request of exactly its type's size
 * whose fields are in range, and a refused one has a reason.
 */
#include <stdint.h>
#include <string.h>

#include "hugepaged-protocol.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define require(x) do { if (!(x)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* the daemon receives into an 8-byte aligned buffer of HP_MSG_MAX */
        _Alignas(8) uint8_t buf[HP_MSG_MAX];
        char why[HP_ERROR_TEXT];

        if (size > sizeof(buf))
                size = sizeof(buf);
        memcpy(buf, data, size);

        int t = hp_msg_check(buf, size);
        int r = proto_check_request(buf, size, why, sizeof(why));
        require(memchr(why, '\0', sizeof(why)) != NULL);
        if (r < 0) {
                require(why[0] != '\0');
                require(r == -EBADMSG || r == -EPROTONOSUPPORT || r == -EOPNOTSUPP || r == -EMSGSIZE ||
                        r == -EPROTO || r == -EINVAL || r == -ERANGE);
                return 0;
        }
        require(r == t && size == hp_msg_size((uint16_t)r));
        require(r == HP_MSG_HELLO || r == HP_MSG_UFFD || r == HP_MSG_REGISTER || r == HP_MSG_UNREGISTER ||
                r == HP_MSG_SET_POLICY || r == HP_MSG_GET_STATS || r == HP_MSG_SYNC || r == HP_MSG_HUGETLB_RESERVE ||
                r == HP_MSG_INHERIT || r == HP_MSG_SHMEM_CREATE);
        if (r == HP_MSG_REGISTER || r == HP_MSG_UNREGISTER || r == HP_MSG_SYNC) {
                const struct hp_range_req *q = (const void *)buf;
                require(q->length > 0 && q->addr + q->length > q->addr && q->addr + q->length <= HP_USER_ADDR_MAX);
                require((q->addr | q->length) % HP_PAGE_SIZE == 0 && q->addr != 0);
                if (r == HP_MSG_REGISTER)
                        require(q->threshold <= HP_REGION_PAGES &&
                                (q->backend == HP_RANGE_ANON ||
                                 (q->backend == HP_RANGE_HUGETLB && q->threshold == 0 &&
                                  (q->addr | q->length) % HP_REGION_SIZE == 0) ||
                                 (q->backend == HP_RANGE_SHMEM && q->addr % HP_REGION_SIZE == 0)));
        }
        if (r == HP_MSG_HUGETLB_RESERVE) {
                const struct hp_hugetlb_req *q = (const void *)buf;
                require(q->pages <= HP_HUGETLB_PAGES_MAX && !(q->flags & ~HP_HUGETLB_FLAGS_ALL) && q->reserved == 0);
        }
        if (r == HP_MSG_SHMEM_CREATE) {
                const struct hp_shmem_req *q = (const void *)buf;
                require(q->length > 0 && q->length <= HP_SHMEM_LENGTH_MAX && q->flags == 0 && q->reserved == 0);
        }
        if (r == HP_MSG_SET_POLICY) {
                const struct hp_policy *p = (const void *)buf;
                require(p->threshold >= 1 && p->threshold <= HP_REGION_PAGES && !(p->flags & ~HP_POLICY_FLAGS_ALL));
        }
        /* without room for a reason it must not write any */
        (void)proto_check_request(buf, size, NULL, 0);
        return 0;
}
