/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * promote.h: promotion of regions to huge pages on worker threads (promote.c).
 * promote_region: with the client locked (a fault thread or the main
 * thread); the rest: main thread.
 */
#ifndef HP_PROMOTE_H
#define HP_PROMOTE_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct manager;
struct region;

/* Start the workers (Workers=) once the loop exists; stop them at exit. */
int promote_start(struct manager *m, unsigned workers);
void promote_stop(struct manager *m);
/* Queue a region's promotion. native: the region was handed to the kernel
 * (unregistered): collapse it, then register it again through its backend;
 * such a job looks first at not_before_ns (CLOCK_MONOTONIC; 0: at once).
 * Otherwise fill its holes with zero copies and collapse it registered.
 * -ENOMEM: not queued (the region is left as it is). */
int promote_region(struct client *c, struct region *r, bool native, uint64_t not_before_ns);
/* Register again every region left handed to the kernel after its
 * promotion (waiting for a stream to pass: promote.c), now. */
void promote_rearm_pending(struct client *c);
/* The heartbeat: register again the runs of c no job next to them holds
 * back (a safety net: a run is normally registered by its neighbour's job). */
void promote_rearm_idle(struct client *c);
/* Drop the jobs of a client that is going away (not yet started ones). */
void promote_forget_client(struct manager *m, uint64_t client_id);

#endif
