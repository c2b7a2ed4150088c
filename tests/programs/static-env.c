/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * static-env: a statically linked program (no dynamic loader: LD_PRELOAD
 * means nothing to it) that prints the variables hugepaged-run sets for an
 * allocator, so tests/programs/allocator.py can see that it was left alone.
 */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
        static const char *const names[] = { "LD_PRELOAD", "MALLOC_CONF", "MIMALLOC_ALLOW_DECOMMIT",
                                             "TCMALLOC_SKIP_SBRK" };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                const char *v = getenv(names[i]);
                printf("%s=%s\n", names[i], v ? v : "");
        }
        return 0;
}
