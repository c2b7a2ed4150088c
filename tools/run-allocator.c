/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * run-allocator.c: hugepaged-run's --allocator. The shim can only manage
 * memory a program maps with mmap() in pieces of --min-size and more; glibc's
 * malloc keeps most of a heap where it cannot (brk, arenas mapped by an
 * internal mmap, blocks under 2 MiB). jemalloc, mimalloc and tcmalloc get
 * their memory from the OS with plain mmap() calls the shim sees; tuned as
 * below, those calls are few, large and kept, and the shim hands them to the
 * daemon whole.
 *
 * Owns: the table of allocators (library, tuning), finding the library,
 * setting its tuning in the environment, and reading a program's ELF file to
 * tell whether it brings its own allocator.
 *
 * Must never: load an allocator into hugepaged-run itself (it only names it
 * in LD_PRELOAD), override a tuning variable the user set, or trust the
 * program file: every offset and size read from it is checked against the
 * file's length.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run-allocator.h"
#include "util.h"

/* meson: the multiarch library directory first (Debian's), then the rest */
#ifndef HP_SYSTEM_LIBDIRS
#define HP_SYSTEM_LIBDIRS "/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:/usr/lib64:/usr/lib:/usr/local/lib"
#endif

struct allocator_info {
        const char *soname;
        /* NAME=VALUE, set unless NAME is already in the environment */
        const char *const *tuning;
};

/*
 * Tuning, each from the allocator's own documentation:
 * - jemalloc (5.3, jemalloc(3) "TUNING", MALLOC_CONF): retain:true keeps the
 *   address space of freed extents instead of unmapping it (the default on
 *   64-bit Linux; said explicitly so a system-wide /etc/malloc.conf cannot
 *   turn it off): with it jemalloc grows by mappings of 2 MiB and up,
 *   growing geometrically. Its purging of freed pages (dirty_decay_ms,
 *   muzzy_decay_ms) is left at the defaults: turning it off (-1) raised
 *   Rss in bench/allocators.py (python3 1.09 -> 1.12 x plain, perl 1.05 ->
 *   1.11) and made nothing faster (python3 0.43 x plain either way).
 * - mimalloc (2.0, MIMALLOC_*): it maps 32 MiB-aligned segments (managed
 *   whole), but by default decommits idle parts of them and commits a
 *   thread's first segments lazily, in 64 KiB pieces. allow_decommit=0
 *   keeps what it committed; eager_commit_delay=0 commits segments at once.
 *   large_os_pages stays off: it asks for MAP_HUGETLB.
 * - tcmalloc (gperftools 2.10, TCMALLOC_*): skip_sbrk=true, or the heap
 *   grows with sbrk(2) like glibc's main arena and nothing of it can be
 *   managed; release_rate=0 keeps freed spans rather than returning them
 *   with MADV_DONTNEED a span at a time.
 */
static const char *const jemalloc_tuning[] = { "MALLOC_CONF=retain:true", NULL };
static const char *const mimalloc_tuning[] = {
        "MIMALLOC_ALLOW_DECOMMIT=0", "MIMALLOC_EAGER_COMMIT_DELAY=0", NULL,
};
static const char *const tcmalloc_tuning[] = {
        "TCMALLOC_SKIP_SBRK=true", "TCMALLOC_RELEASE_RATE=0", NULL,
};

static const struct allocator_info allocators[HP_ALLOCATOR_MAX] = {
        [HP_ALLOCATOR_GLIBC] = { NULL, NULL },
        [HP_ALLOCATOR_JEMALLOC] = { "libjemalloc.so.2", jemalloc_tuning },
        [HP_ALLOCATOR_MIMALLOC] = { "libmimalloc.so.2", mimalloc_tuning },
        [HP_ALLOCATOR_TCMALLOC] = { "libtcmalloc_minimal.so.4", tcmalloc_tuning },
};

const char *allocator_soname(enum hp_allocator a)
{
        return a < HP_ALLOCATOR_MAX ? allocators[a].soname : NULL;
}

char *allocator_find_library(enum hp_allocator a)
{
        const char *soname = allocator_soname(a);
        char path[PATH_MAX];

        if (!soname)
                return NULL;
        for (const char *d = HP_SYSTEM_LIBDIRS; *d; ) {
                size_t n = strcspn(d, ":");
                if (n > 0 && snprintf(path, sizeof(path), "%.*s/%s", (int)n, d, soname) < (int)sizeof(path) &&
                    access(path, R_OK) == 0)
                        return realpath(path, NULL);
                d += n;
                d += strspn(d, ":");
        }
        return NULL;
}

int allocator_tune(enum hp_allocator a, bool debug)
{
        const char *const *t = a < HP_ALLOCATOR_MAX ? allocators[a].tuning : NULL;

        for (; t && *t; t++) {
                const char *eq = strchr(*t, '=');
                char name[64];

                snprintf(name, sizeof(name), "%.*s", (int)(eq - *t), *t);
                if (getenv(name)) {
                        if (debug)
                                fprintf(stderr, "%s: %s: %s is set already (%s), kept\n",
                                        program_invocation_short_name, hp_allocator_names[a], name, getenv(name));
                        continue;
                }
                if (setenv(name, eq + 1, 1) < 0)
                        return -errno;
                if (debug)
                        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, hp_allocator_names[a], *t);
        }
        return 0;
}

char *allocator_which(const char *cmd)
{
        const char *path = getenv("PATH");
        char buf[PATH_MAX];

        if (strchr(cmd, '/'))
                return access(cmd, X_OK) == 0 ? realpath(cmd, NULL) : NULL;
        if (!path)
                path = "/usr/local/bin:/bin:/usr/bin";
        for (const char *d = path; ; ) {
                size_t n = strcspn(d, ":");
                /* an empty entry is the current directory */
                if (snprintf(buf, sizeof(buf), "%.*s%s%s", (int)n, n ? d : ".", "/", cmd) < (int)sizeof(buf)) {
                        struct stat st;
                        if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
                                return realpath(buf, NULL);
                }
                if (!d[n])
                        break;
                d += n + 1;
        }
        return NULL;
}

/* ---- ELF ------------------------------------------------------------------------- */

/* Libraries that are a malloc (by file name): linking one means the program
 * chose its allocator. */
static const char *const allocator_libraries[] = {
        "libjemalloc", "libtcmalloc", "libmimalloc", "libhoard", "libsnmalloc", "librpmalloc",
        "libtbbmalloc",
};

/* Symbols whose definition in the executable means an allocator built in
 * (malloc itself, or the prefixed entry points of vendored copies). */
static const char *const allocator_symbols[] = {
        "malloc", "je_malloc", "mallocx", "je_mallocx", "tc_malloc", "mi_malloc", "rpmalloc",
};

struct elf_file {
        const unsigned char *data;
        size_t size;
};

static const void *elf_at(const struct elf_file *f, uint64_t off, uint64_t len)
{
        if (off > f->size || len > f->size - off)
                return NULL;
        return f->data + off;
}

/* The NUL-terminated string at offset i of the string table [off, off+len). */
static const char *elf_string(const struct elf_file *f, uint64_t off, uint64_t len, uint64_t i)
{
        const char *s = elf_at(f, off, len);

        if (!s || i >= len || !memchr(s + i, '\0', len - i))
                return NULL;
        return s + i;
}

static int elf_inspect(const struct elf_file *f, char *why, size_t why_size)
{
        const Elf64_Ehdr *eh = elf_at(f, 0, sizeof(*eh));
        const Elf64_Shdr *sh;
        bool interp = false;

        if (!eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
                return -ENOEXEC;
        if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
            eh->e_phentsize != sizeof(Elf64_Phdr) ||
            (eh->e_shnum && eh->e_shentsize != sizeof(Elf64_Shdr)))
                return -ENOEXEC;

        const Elf64_Phdr *ph = elf_at(f, eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(*ph));
        if (!ph)
                return -ENOEXEC;
        for (unsigned i = 0; i < eh->e_phnum; i++)
                interp |= ph[i].p_type == PT_INTERP;
        if (!interp) {
                /* no dynamic loader: LD_PRELOAD means nothing to it */
                snprintf(why, why_size, "it is statically linked");
                return 1;
        }

        sh = elf_at(f, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(*sh));
        if (!sh)
                return -ENOEXEC;
        for (unsigned i = 0; i < eh->e_shnum; i++) {
                const Elf64_Shdr *s = &sh[i], *str;

                if ((s->sh_type != SHT_DYNAMIC && s->sh_type != SHT_DYNSYM) || s->sh_link >= eh->e_shnum)
                        continue;
                str = &sh[s->sh_link];
                if (s->sh_type == SHT_DYNAMIC) {
                        const Elf64_Dyn *d = elf_at(f, s->sh_offset, s->sh_size);
                        for (size_t j = 0; d && j < s->sh_size / sizeof(*d) && d[j].d_tag != DT_NULL; j++) {
                                const char *name;
                                if (d[j].d_tag != DT_NEEDED)
                                        continue;
                                name = elf_string(f, str->sh_offset, str->sh_size, d[j].d_un.d_val);
                                for (size_t k = 0; name && k < ARRAY_SIZE(allocator_libraries); k++)
                                        if (strncmp(name, allocator_libraries[k], strlen(allocator_libraries[k])) == 0) {
                                                snprintf(why, why_size, "it is linked to %s", name);
                                                return 1;
                                        }
                        }
                } else {
                        const Elf64_Sym *sym = elf_at(f, s->sh_offset, s->sh_size);
                        for (size_t j = 0; sym && j < s->sh_size / sizeof(*sym); j++) {
                                const char *name;
                                if (sym[j].st_shndx == SHN_UNDEF || ELF64_ST_TYPE(sym[j].st_info) != STT_FUNC)
                                        continue;
                                name = elf_string(f, str->sh_offset, str->sh_size, sym[j].st_name);
                                for (size_t k = 0; name && k < ARRAY_SIZE(allocator_symbols); k++)
                                        if (strcmp(name, allocator_symbols[k]) == 0) {
                                                snprintf(why, why_size, "it defines %s() itself", name);
                                                return 1;
                                        }
                        }
                }
        }
        return 0;
}

int allocator_program_has_own(const char *path, char *why, size_t why_size)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct elf_file f;
        struct stat st;
        void *p;
        int r;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr))
                return -ENOEXEC;
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        f = (struct elf_file){ .data = p, .size = (size_t)st.st_size };
        r = elf_inspect(&f, why, why_size);
        munmap(p, (size_t)st.st_size);
        return r;
}
