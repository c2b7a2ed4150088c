/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus.h: the org.hugepaged1 D-Bus interfaces (bus.c). Bus thread only.
 */
#ifndef HP_BUS_H
#define HP_BUS_H

#include <stdio.h>
#include <systemd/sd-bus.h>

#include "bus-thread.h"

#define BUS_NAME        "org.hugepaged1"
#define BUS_PATH        "/org/hugepaged1"
#define BUS_CLIENT_PATH "/org/hugepaged1/client"
#define BUS_MANAGER_IFACE "org.hugepaged1.Manager"
#define BUS_CLIENT_IFACE  "org.hugepaged1.Client"

/* Register the manager object and the per-client objects on bus. */
int bus_add_objects(sd_bus *bus, struct bus_thread *bt);
/* Emit ClientAdded/ClientRemoved. */
int bus_emit_client_event(sd_bus *bus, const struct bus_event *e);
/* PropertiesChanged for the counters of the Manager and of every client
 * present in both snapshots that differ between old and new. */
int bus_emit_changes(sd_bus *bus, const struct snapshot *old, const struct snapshot *new);
/* Answer the method call a command came from. */
int bus_reply_command(struct bus_command *cmd);

/* Print the introspection XML of both interfaces (--bus-introspect). */
int bus_introspect(FILE *f);

/* bus-introspect.c: one interface's XML from its vtable. */
void bus_introspect_interface(FILE *f, const char *interface, const sd_bus_vtable *vtable);

#endif
