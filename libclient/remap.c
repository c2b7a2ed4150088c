/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * remap.c: mremap() of a managed range that is several VMAs, piece by piece.
 *
 * Owns: nothing; the fallback preload.c takes when the kernel says EFAULT
 * because the range is not one VMA.
 *
 * Why: the daemon unregisters single 2 MiB regions (promotion, the dense
 * path), which splits the VMA; mremap() cannot span VMAs. The shim normally
 * waits for those jobs (SYNC) and retries. A split can outlive them: a
 * region the daemon could not register again, a daemon killed before the
 * kernel dropped its userfaultfd, or two pieces the kernel will not merge
 * back (their anon_vmas differ when a piece got its first page while it
 * was split off). Without the shim the range would have been one VMA, so
 * the program's mremap() must work: move or resize each piece the way the
 * kernel would have moved or resized the whole.
 *
 * Must never: act on anything but contiguous private anonymous mappings of
 * one protection covering the whole range (anything else keeps the kernel's
 * EFAULT), allocate, go through the interposed calls (raw.h only), or unmap
 * an address it has not just checked is its own: other threads map and
 * unmap all the while, and a hole left open even for a moment can be taken
 * by them. A failure part-way moves the pieces back before it returns.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "raw.h"
#include "shim.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define MAX_PIECES 64

struct piece {
        uintptr_t lo, hi;
};

static bool parse_hex(const char **s, uintptr_t *v)
{
        const char *p = *s;
        uintptr_t x = 0;
        int n = 0;

        for (;; p++, n++) {
                unsigned d;
                if (*p >= '0' && *p <= '9')
                        d = (unsigned)(*p - '0');
                else if (*p >= 'a' && *p <= 'f')
                        d = (unsigned)(*p - 'a' + 10);
                else
                        break;
                if (n == 16)
                        return false;
                x = x << 4 | d;
        }
        *s = p;
        *v = x;
        return n > 0;
}

static const char *skip_field(const char *p, const char *end)
{
        while (p < end && *p != ' ')
                p++;
        while (p < end && *p == ' ')
                p++;
        return p;
}

/*
 * One line of /proc/self/maps, [line, end) without the newline: its bounds,
 * and whether it is private anonymous memory (no file, no [heap] or [stack])
 * with protection *prot.
 */
static bool parse_line(const char *line, const char *end, struct piece *pc, int *prot, bool *anon)
{
        const char *p = line;

        if (!parse_hex(&p, &pc->lo) || *p++ != '-' || !parse_hex(&p, &pc->hi) || *p++ != ' ' || end - p < 5)
                return false;
        *prot = (p[0] == 'r' ? PROT_READ : 0) | (p[1] == 'w' ? PROT_WRITE : 0) | (p[2] == 'x' ? PROT_EXEC : 0);
        bool private = p[3] == 'p';
        p = skip_field(p, end);                 /* perms */
        p = skip_field(p, end);                 /* offset */
        bool nodev = end - p >= 5 && memcmp(p, "00:00", 5) == 0;
        p = skip_field(p, end);                 /* device */
        bool noinode = p < end && *p == '0' && (p + 1 == end || p[1] == ' ');
        p = skip_field(p, end);                 /* inode */
        bool unnamed = p == end || (end - p >= 6 && memcmp(p, "[anon:", 6) == 0);
        *anon = private && nodev && noinode && unnamed;
        return true;
}

/*
 * The pieces of [start, end): contiguous private anonymous mappings of one
 * protection covering all of it, in order. Their number, or -1.
 */
static int find_pieces(uintptr_t start, uintptr_t end, struct piece *pcs, int max, int *prot)
{
        char buf[8192];
        size_t have = 0;
        int n = -1, fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
        uintptr_t next = start;
        bool done = false, bad = false;

        if (fd < 0)
                return -1;
        while (!done && !bad) {
                ssize_t r = read(fd, buf + have, sizeof(buf) - have);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
                have += (size_t)r;
                char *line = buf, *nl;
                while (!done && !bad && (nl = memchr(line, '\n', (size_t)(buf + have - line)))) {
                        struct piece pc;
                        int pr;
                        bool anon;
                        if (!parse_line(line, nl, &pc, &pr, &anon))
                                bad = true;
                        else if (pc.hi <= next)
                                ;                       /* before the range */
                        else if (pc.lo > next || !anon || (n >= 0 && pr != *prot) || n + 1 >= max)
                                bad = true;             /* a hole, or not like the rest */
                        else {
                                if (n < 0)
                                        n = 0;
                                *prot = pr;
                                pcs[n++] = pc;
                                next = pc.hi;
                                done = next >= end;
                        }
                        line = nl + 1;
                }
                have -= (size_t)(line - buf);
                memmove(buf, line, have);
                if (have == sizeof(buf))
                        bad = true;                     /* a line longer than the buffer */
        }
        close(fd);
        return done && !bad ? n : -1;
}

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

/*
 * Move [old, keep_end), mapping by mapping, to the same offsets at dest.
 * Each move keeps its source mapped (MREMAP_DONTUNMAP: an empty husk), so
 * no hole opens where another thread's mmap() could land while this runs.
 * The layout is read again when a move finds it changed (the daemon may
 * split a mapping meanwhile: EFAULT). On failure the mappings already moved
 * go back onto their husks, by the layout found at dest then. Returns 0, or
 * -errno with *gone set to the bytes at the start of dest that are no
 * longer ours (holes left by mappings moved back, or mappings that could
 * not be).
 */
static int move_pieces(uintptr_t old, uintptr_t keep_end, uintptr_t dest, int prot, size_t *gone)
{
        uintptr_t done = old;
        int e = 0;

        for (int tries = 0; done < keep_end && tries < 4; tries++) {
                struct piece pcs[MAX_PIECES];
                int pr, n = find_pieces(done, keep_end, pcs, MAX_PIECES, &pr);
                if (n < 0 || pr != prot) {
                        e = EFAULT;
                        break;
                }
                for (int i = 0; i < n; i++) {
                        uintptr_t lo = pcs[i].lo > done ? pcs[i].lo : done;
                        uintptr_t hi = pcs[i].hi < keep_end ? pcs[i].hi : keep_end;
                        if (raw_mremap((void *)lo, hi - lo, hi - lo,
                                       MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
                                       (void *)(dest + (lo - old))) == MAP_FAILED) {
                                e = errno;
                                break;
                        }
                        done = hi;
                }
                if (done < keep_end && e != EFAULT)
                        break;
        }
        if (done >= keep_end)
                return 0;

        size_t moved = done - old;
        struct piece back[MAX_PIECES];
        int pr, nb = moved ? find_pieces(dest, dest + moved, back, MAX_PIECES, &pr) : 0;
        for (int j = 0; j < nb; j++) {
                uintptr_t blo = back[j].lo > dest ? back[j].lo : dest;
                uintptr_t bhi = back[j].hi < dest + moved ? back[j].hi : dest + moved;
                if (raw_mremap((void *)blo, bhi - blo, bhi - blo, MREMAP_MAYMOVE | MREMAP_FIXED,
                               (void *)(old + (blo - dest))) == MAP_FAILED)
                        break;
        }
        *gone = moved;
        return -(e ? e : EFAULT);
}

void *shim_remap_pieces(void *old_p, size_t old_len, size_t new_len, int flags, void *new_addr)
{
        const int anon = MAP_PRIVATE | MAP_ANONYMOUS;
        uintptr_t old = (uintptr_t)old_p;
        size_t old_plen = hp_round_up(old_len, HP_PAGE_SIZE), new_plen = hp_round_up(new_len, HP_PAGE_SIZE);
        size_t keep = old_plen < new_plen ? old_plen : new_plen;
        struct piece pcs[MAX_PIECES];
        int prot = 0, n;
        void *dest;

        if ((flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED)) || (old & (HP_PAGE_SIZE - 1)) || new_len == 0 ||
            old_plen > SIZE_MAX / 4 || new_plen > SIZE_MAX / 4 ||
            (n = find_pieces(old, old + old_plen, pcs, MAX_PIECES, &prot)) < 0) {
                errno = EFAULT;
                return MAP_FAILED;
        }

        if (!(flags & MREMAP_FIXED)) {
                if (new_plen <= old_plen) {
                        if (new_plen < old_plen && raw_munmap((void *)(old + new_plen), old_plen - new_plen) < 0)
                                return MAP_FAILED;
                        return old_p;
                }
                /* grow in place if the space after it is free */
                void *t = raw_mmap((void *)(old + old_plen), new_plen - old_plen, prot, anon | MAP_FIXED_NOREPLACE,
                                   -1, 0);
                if (t == (void *)(old + old_plen))
                        return old_p;
                if (t != MAP_FAILED)
                        (void) raw_munmap(t, new_plen - old_plen);
                if (!(flags & MREMAP_MAYMOVE)) {
                        errno = ENOMEM;
                        return MAP_FAILED;
                }
                dest = hp_mmap_aligned(new_plen, PROT_NONE, anon | MAP_NORESERVE);
        } else {
                uintptr_t to = (uintptr_t)new_addr;
                if ((to & (HP_PAGE_SIZE - 1)) || (to < old + old_plen && old < to + new_plen)) {
                        errno = EINVAL;
                        return MAP_FAILED;
                }
                /* What the kernel does first: the destination is unmapped. */
                dest = raw_mmap(new_addr, new_plen, PROT_NONE, anon | MAP_NORESERVE | MAP_FIXED, -1, 0);
        }
        if (dest == MAP_FAILED)
                return MAP_FAILED;

        /* the grown tail: fresh zero pages, as the kernel would give */
        uintptr_t d = (uintptr_t)dest;
        if (new_plen > keep &&
            raw_mmap((void *)(d + keep), new_plen - keep, prot, anon | MAP_FIXED, -1, 0) == MAP_FAILED) {
                int e = errno;
                (void) raw_munmap(dest, new_plen);
                errno = e;
                return MAP_FAILED;
        }
        size_t gone = 0;
        int r = move_pieces(old, old + keep, d, prot, &gone);
        if (r < 0) {
                /* Unmap only what is still our reservation. */
                if (gone < new_plen)
                        (void) raw_munmap((void *)(d + gone), new_plen - gone);
                errno = -r;
                return MAP_FAILED;
        }
        /* the husks the moves left, and what a shrink drops */
        (void) raw_munmap(old_p, old_plen);
        return dest;
}
