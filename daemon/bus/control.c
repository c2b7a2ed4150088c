/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * control.c: runs, on the main thread, the state-changing requests that
 * come from D-Bus (SetPolicy, Reload), and tells the bus thread when clients
 * come and go. Decides who may change what: root, plus AdminUsers= and
 * AdminGroups= of hugepaged.conf; the bus thread only reports who called.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bus-thread.h"
#include "client.h"
#include "control.h"
#include "heartbeat.h"
#include "log.h"
#include "manager.h"
#include "notify.h"

static bool id_in(const struct id_list *l, uint32_t id)
{
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i] == id)
                        return true;
        return false;
}

static bool caller_privileged(struct manager *m, const struct bus_command *cmd)
{
        if (cmd->euid == 0 || id_in(&m->admin_uids, cmd->euid))
                return true;
        if (cmd->egid != (gid_t)-1 && id_in(&m->admin_gids, cmd->egid))
                return true;
        for (int i = 0; i < cmd->n_gids; i++)
                if (id_in(&m->admin_gids, cmd->gids[i]))
                        return true;
        return false;
}

static void fail(struct bus_command *cmd, const char *name, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void fail(struct bus_command *cmd, const char *name, const char *fmt, ...)
{
        va_list ap;
        cmd->error_name = name;
        va_start(ap, fmt);
        vsnprintf(cmd->error_message, sizeof(cmd->error_message), fmt, ap);
        va_end(ap);
}

static void run_set_policy(struct manager *m, struct bus_command *cmd)
{
        struct client *c = client_by_pid(m, cmd->pid);
        if (!c) {
                fail(cmd, BUS_ERROR_NO_SUCH_CLIENT, "No client with pid %d", (int)cmd->pid);
                return;
        }
        /* the top layer (policy.h): over the config and the client's own,
         * but dense prediction only as far as the config allows */
        client_lock(c);
        if (cmd->threshold)
                c->layers.admin.threshold = cmd->threshold;
        if (cmd->max_window)
                c->layers.admin.max_window = cmd->max_window;
        if (cmd->dense_predict >= 0)
                c->layers.admin.dense_predict = (int8_t)cmd->dense_predict;
        client_policy_update(c);
        log_info("client %d (%s): policy set over D-Bus by uid %u: threshold %u, fault window %u, "
                 "dense prediction %s", c->pid, c->comm, (unsigned)cmd->euid, c->policy.threshold,
                 c->policy.max_window, c->policy.dense_predict ? "on" : "off");
        client_unlock(c);
}

static void run_reload(struct manager *m, struct bus_command *cmd)
{
        char error[sizeof(cmd->error_message)] = "";
        log_info("reload requested over D-Bus by uid %u", (unsigned)cmd->euid);
        int r = manager_reload(m, error, sizeof(error));
        if (r == -EINVAL)
                fail(cmd, BUS_ERROR_CONFIG_INVALID, "%s", error[0] ? error : "the configuration is invalid");
        else if (r < 0)
                fail(cmd, BUS_ERROR_FAILED, "Reload failed: %s", error[0] ? error : strerror(-r));
}

void control_run(struct manager *m)
{
        struct bus_command *list = bus_thread_take_commands(m->bus), *done = NULL, **tail = &done;

        while (list) {
                struct bus_command *cmd = list;
                list = cmd->next;
                if (!caller_privileged(m, cmd)) {
                        fail(cmd, BUS_ERROR_ACCESS_DENIED, "%s needs root (or AdminUsers=/AdminGroups= in "
                             "hugepaged.conf); uid %u is neither",
                             cmd->type == BUS_COMMAND_RELOAD ? "Reload" : "SetPolicy", (unsigned)cmd->euid);
                        log_notice("refused %s from uid %u over D-Bus",
                                   cmd->type == BUS_COMMAND_RELOAD ? "Reload" : "SetPolicy", (unsigned)cmd->euid);
                } else if (cmd->type == BUS_COMMAND_SET_POLICY)
                        run_set_policy(m, cmd);
                else
                        run_reload(m, cmd);
                cmd->next = NULL;
                *tail = cmd;
                tail = &cmd->next;
        }
        /* Readers must see the change once they have the answer. */
        heartbeat_publish(m);
        while (done) {
                struct bus_command *cmd = done;
                done = cmd->next;
                bus_thread_complete(m->bus, cmd);
        }
}

void control_client_event(struct client *c, bool added)
{
        if (c->m->bus)
                bus_thread_client_event(c->m->bus, added, c->pid, c->uid, c->comm);
}
