/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * control.h: D-Bus commands run on the main thread, client events for the
 * bus thread (control.c).
 */
#ifndef HP_CONTROL_H
#define HP_CONTROL_H

#include <stdbool.h>

struct client;
struct manager;

void control_run(struct manager *m);
void control_client_event(struct client *c, bool added);

#endif
