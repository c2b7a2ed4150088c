/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * privs.h: what the daemon keeps of root's powers once it is set up.
 */
#ifndef HP_PRIVS_H
#define HP_PRIVS_H

/*
 * Drop every capability except the ones in privs.c's table, from the
 * effective, permitted, inheritable, ambient and bounding sets; set
 * no_new_privs; make the process non-dumpable. Capabilities are per thread:
 * call it before any thread is started (threads inherit the reduced sets).
 * 0 or -errno (logged).
 */
int privs_drop(void);

#endif
