/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * allocator.h: the malloc implementations hugepaged-run can put in front of
 * a program (--allocator, HUGEPAGED_ALLOCATOR, the [Program:NAME] key
 * Allocator= of hugepaged.conf(5)). Names only: hugepaged-run owns the
 * libraries and their tuning, config.c the key.
 *
 * Header-only; nothing here allocates or logs.
 */
#ifndef HP_ALLOCATOR_H
#define HP_ALLOCATOR_H

#include <strings.h>

enum hp_allocator {
        HP_ALLOCATOR_GLIBC,             /* the program's own malloc: nothing preloaded */
        HP_ALLOCATOR_JEMALLOC,
        HP_ALLOCATOR_MIMALLOC,
        HP_ALLOCATOR_TCMALLOC,
        HP_ALLOCATOR_MAX,
};

static const char *const hp_allocator_names[HP_ALLOCATOR_MAX] = {
        [HP_ALLOCATOR_GLIBC] = "glibc",
        [HP_ALLOCATOR_JEMALLOC] = "jemalloc",
        [HP_ALLOCATOR_MIMALLOC] = "mimalloc",
        [HP_ALLOCATOR_TCMALLOC] = "tcmalloc",
};

#define HP_ALLOCATOR_LIST "glibc, jemalloc, mimalloc or tcmalloc"

/* The allocator called name (any case), or -1. */
static inline int hp_allocator_from_name(const char *name)
{
        for (int i = 0; i < HP_ALLOCATOR_MAX; i++)
                if (strcasecmp(name, hp_allocator_names[i]) == 0)
                        return i;
        return -1;
}

#endif
