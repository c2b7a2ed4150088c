/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * reload.c: turns hugepaged.conf into the running daemon's settings, at
 * start, on SIGHUP and on the D-Bus Reload method. A file with any error
 * changes nothing: the old settings stay and serving goes on. Clients stay
 * connected across a reload and take the new defaults and [Program:NAME]
 * overrides for what neither they nor SetPolicy set (policy.h).
 * Runs on the main thread.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "client.h"
#include "fault-threads.h"
#include "heartbeat.h"
#include "log.h"
#include "manager.h"
#include "notify.h"

struct load_report {
        char *error;
        size_t errlen;
        bool have_error;
};

static void report(void *userdata, int level, const char *msg)
{
        struct load_report *r = userdata;
        log_full_errno(level, 0, "%s", msg);
        if (level <= LOG_ERR && !r->have_error && r->error) {
                snprintf(r->error, r->errlen, "%s", msg);
                r->have_error = true;
        }
}

int manager_load_config(struct manager *m, struct config *ret, char *error, size_t errlen)
{
        struct load_report rep = { .error = error, .errlen = errlen };
        struct config c;
        int r;

        r = config_init(&c);
        if (r < 0)
                return log_error_errno(r, "cannot set up the configuration: %m");
        r = config_load(&c, m->config_path, report, &rep);
        if (r == -ENOENT && !m->config_explicit) {
                m->config_loaded = false;
                log_debug("%s does not exist: built-in defaults", m->config_path);
        } else if (r == -EINVAL) {
                config_done(&c);
                return log_error_errno(r, "%s is invalid: keeping %s", m->config_path,
                                       m->cfg.socket_path ? "the settings in force" : "nothing, not starting");
        } else if (r < 0) {
                if (error)
                        snprintf(error, errlen, "cannot read %s: %s", m->config_path, strerror(-r));
                config_done(&c);
                return log_error_errno(r, "cannot read %s: %m", m->config_path);
        } else
                m->config_loaded = true;
        r = config_apply_overrides(&c, &m->cli, m->cli_set);
        if (r < 0) {
                config_done(&c);
                return log_error_errno(r, "out of memory: %m");
        }
        *ret = c;
        return 0;
}

static int resolve(char **names, bool groups, struct id_list *ret)
{
        size_t n = 0;
        while (names && names[n])
                n++;
        uint32_t *v = n ? calloc(n, sizeof(*v)) : NULL;
        size_t k = 0;

        if (n && !v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *s = names[i];
                char *end;
                unsigned long id = strtoul(s, &end, 10);
                if (isdigit((unsigned char)s[0]) && !*end && id < UINT32_MAX) {
                        v[k++] = (uint32_t)id;
                        continue;
                }
                if (groups) {
                        struct group *g = getgrnam(s);
                        if (g) {
                                v[k++] = g->gr_gid;
                                continue;
                        }
                } else {
                        struct passwd *p = getpwnam(s);
                        if (p) {
                                v[k++] = p->pw_uid;
                                continue;
                        }
                }
                log_notice("%s '%s' does not exist: ignored", groups ? "group" : "user", s);
        }
        free(ret->v);
        *ret = (struct id_list){ .v = v, .n = k };
        return 0;
}

int manager_apply_config(struct manager *m, struct config *cfg, bool startup)
{
        int r;

        if (!startup) {
                /* These need a restart; keep what is in force and say so. */
                if (strcmp(cfg->socket_path, m->cfg.socket_path) != 0)
                        log_notice("Socket=%s takes effect at the next start (listening on %s)", cfg->socket_path,
                                   m->cfg.socket_path);
                if (cfg->nice != m->cfg.nice)
                        log_notice("Nice=%d takes effect at the next start (%d running)", cfg->nice, m->cfg.nice);
                cfg->nice = m->cfg.nice;
                if (cfg->workers != m->cfg.workers)
                        log_notice("Workers=%u takes effect at the next start (%u running)", cfg->workers,
                                   m->cfg.workers);
                if (cfg->fault_threads != m->cfg.fault_threads)
                        log_notice("FaultThreads=%u takes effect at the next start (%u running)", cfg->fault_threads,
                                   fault_threads_count(m));
                cfg->fault_threads = m->cfg.fault_threads;
                char *keep = m->cfg.socket_path;
                m->cfg.socket_path = cfg->socket_path;
                cfg->socket_path = keep;
                cfg->workers = m->cfg.workers;
        }
        if ((r = resolve(cfg->allowed_users, false, &m->allowed_uids)) < 0 ||
            (r = resolve(cfg->allowed_groups, true, &m->allowed_gids)) < 0 ||
            (r = resolve(cfg->admin_users, false, &m->admin_uids)) < 0 ||
            (r = resolve(cfg->admin_groups, true, &m->admin_gids)) < 0)
                return log_error_errno(r, "out of memory: %m");
        if (m->allowed_uids.n == 0 && m->allowed_gids.n == 0)
                log_notice("no AllowedUsers= or AllowedGroups= exist: only root may connect");
        __atomic_store_n(&log_max_level, cfg->log_level, __ATOMIC_RELAXED);

        /* The fault threads read the config with a client locked: with
         * every client locked, none reads it now. */
        for (struct client *c = m->clients; c; c = c->next)
                client_lock(c);
        config_done(&m->cfg);
        m->cfg = *cfg;
        *cfg = (struct config){ 0 };

        /* Every client's policy again from its layers (policy.h): what the
         * client or SetPolicy set stays, the rest follows the new file. */
        unsigned updated = 0;
        for (struct client *c = m->clients; c; c = c->next)
                if (c->state != CLIENT_DEAD) {
                        client_policy_update(c);
                        updated += !policy_explicit(&c->layers);
                }
        for (struct client *c = m->clients; c; c = c->next)
                client_unlock(c);
        if (!startup)
                log_info("configuration reloaded from %s: threshold %u, fault window %u, dense prediction %s; "
                         "%u client%s without a policy of its own took it",
                         m->config_loaded ? m->config_path : "built-in defaults", m->cfg.threshold,
                         m->cfg.max_window, m->cfg.dense_predict ? "on" : "off", updated, updated == 1 ? "" : "s");
        return 0;
}

int manager_reload(struct manager *m, char *error, size_t errlen)
{
        struct config cfg = { 0 };
        int r;

        notify_reloading();
        r = manager_load_config(m, &cfg, error, errlen);
        if (r >= 0)
                r = manager_apply_config(m, &cfg, false);
        if (r >= 0)
                heartbeat_publish(m);
        config_done(&cfg);
        notify_ready();
        return r;
}

void manager_config_done(struct manager *m)
{
        config_done(&m->cfg);
        config_done(&m->cli);
        free(m->allowed_uids.v);
        free(m->allowed_gids.v);
        free(m->admin_uids.v);
        free(m->admin_gids.v);
}
