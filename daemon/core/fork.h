/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fork.h: a child forked without exec taking over its parent's ranges
 * (HP_MSG_INHERIT, see fork.c).
 */
#ifndef HP_FORK_H
#define HP_FORK_H

#include "hugepaged-protocol.h"

struct client;

/* Answer HP_MSG_INHERIT of c (READY): register in c's mm the parent's ranges
 * that its backends let a child inherit. Replies to the client itself. */
void client_inherit(struct client *c, const struct hp_header *req);

#endif
