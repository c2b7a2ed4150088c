/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * limits.h: bounds on what one client, or one user, can make the daemon hold
 * or do (see limits.c). The per-client and per-manager state is embedded in
 * struct client and struct manager (manager.h).
 */
#ifndef HP_LIMITS_H
#define HP_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loop.h"
#include "ratelimit.h"

struct client;
struct manager;

struct client_limits {
        uint64_t accepted_ns;
        bool in_handshake;              /* on the manager's handshake list */
        struct client *hs_prev, *hs_next;
        struct rate_limit requests;
        bool throttled;                 /* on the manager's throttled list */
        uint64_t resume_ns;
        struct client *throttled_next;
};

struct manager_limits {
        int timer_fd;
        struct watch w_timer;
        uint64_t armed_ns;              /* absolute CLOCK_MONOTONIC; 0: disarmed */
        /* clients in the handshake, oldest first (all share one timeout) */
        struct client *hs_head, *hs_tail;
        struct client *throttled;
};

int limits_start(struct manager *m);
void limits_stop(struct manager *m);
/* May a new connection of this uid be kept? 0, or -EUSERS with why set. */
int limits_admit(struct manager *m, uid_t uid, char *why, size_t whylen);
/* The handshake of c starts now (accept) / is over (ready). */
void limits_handshake_begin(struct client *c);
void limits_handshake_end(struct client *c);
/* c is disconnecting: drop it from every list. */
void limits_forget(struct client *c);
/*
 * Account one request of c. false: over its rate; do not read the socket
 * now: its watch is deferred again once the rate allows.
 */
bool limits_take_request(struct client *c);

#endif
