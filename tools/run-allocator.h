/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * run-allocator.h: hugepaged-run's --allocator: which malloc library goes in
 * front of a program, where it is, how it is tuned, and whether the program
 * brings its own allocator (then it is left alone).
 */
#ifndef HP_RUN_ALLOCATOR_H
#define HP_RUN_ALLOCATOR_H

#include <stdbool.h>
#include <stddef.h>

#include "allocator.h"

/* The default when neither --allocator, HUGEPAGED_ALLOCATOR nor Allocator=
 * names one (hugepaged-run(1) says why). */
#define HP_ALLOCATOR_DEFAULT HP_ALLOCATOR_GLIBC

#define HP_ENV_ALLOCATOR "HUGEPAGED_ALLOCATOR"

/* Absolute path of the allocator's shared library, malloc'ed, or NULL (not
 * installed, or glibc: nothing to load). */
char *allocator_find_library(enum hp_allocator a);

/* The library's file name, as installed by Debian (for messages). */
const char *allocator_soname(enum hp_allocator a);

/* Set the allocator's tuning variables in the environment, each only if the
 * user has not set it. With debug, says each on stderr. 0 or -errno. */
int allocator_tune(enum hp_allocator a, bool debug);

/*
 * Does the executable at path bring its own allocator? 1 (why says which:
 * statically linked, linked to libjemalloc.so.2, defines malloc itself, ...),
 * 0 (dynamically linked, its malloc is libc's), -errno when it cannot tell
 * (not an ELF file, such as a script: the interpreter it names is then what
 * runs, with the allocator).
 */
int allocator_program_has_own(const char *path, char *why, size_t why_size);

/* PATH lookup as execvp(3) does it: malloc'ed path of the file that would
 * run, or NULL. */
char *allocator_which(const char *cmd);

#endif
