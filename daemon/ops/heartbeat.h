/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * heartbeat.h: the main thread's periodic timer (heartbeat.c).
 */
#ifndef HP_HEARTBEAT_H
#define HP_HEARTBEAT_H

struct manager;

int heartbeat_start(struct manager *m);
void heartbeat_stop(struct manager *m);
/* Publish a statistics snapshot to the bus thread now. */
void heartbeat_publish(struct manager *m);

#endif
