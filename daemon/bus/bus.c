/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus.c: the org.hugepaged1 D-Bus interfaces, vtables and their handlers
 * only (model: systemd-oomd's oomd-manager-bus.c). Documented in
 * org.hugepaged1(5), whose interface listing is generated from
 * `hugepaged --bus-introspect`.
 *
 *   /org/hugepaged1               org.hugepaged1.Manager
 *   /org/hugepaged1/client/<pid>  org.hugepaged1.Client
 *
 * Runs on the bus thread: reads come from the latest statistics snapshot,
 * changes (SetPolicy, Reload) go to the main thread as commands and are
 * answered when it has run them. Never touches the manager.
 *
 * Every method is SD_BUS_VTABLE_UNPRIVILEGED as far as sd-bus is concerned:
 * reading is for everyone, and whether a caller may change anything is
 * decided by control.c (root, AdminUsers=, AdminGroups=) and, on the
 * system bus, by the policy file.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "backend.h"
#include "bus.h"
#include "util.h"

/* Counters shared by both interfaces: D-Bus name and place in struct hp_stats. */
struct counter {
        const char *name;
        size_t offset;
};

#define S(f) offsetof(struct hp_stats, f)
static const struct counter counters[] = {
        { "FaultsServed", S(faults_served) },
        { "FaultLatencyP50Ns", S(fault_latency_p50_ns) },
        { "FaultLatencyP99Ns", S(fault_latency_p99_ns) },
        { "PagesPopulated", S(pages_populated) },
        { "RegionsReserved", S(regions_reserved) },
        { "PagesReservedUnused", S(pages_reserved_unused) },
        { "Promotions", S(promotions) },
        { "PromotionsFailed", S(promotions_failed) },
        { "PromotionLatencyP50Ns", S(promotion_latency_p50_ns) },
        { "PromotionLatencyP99Ns", S(promotion_latency_p99_ns) },
        { "RegionsHuge", S(regions_huge) },
        { "ReservationsReleased", S(reservations_released) },
        { "Ranges", S(ranges) },
};
#undef S

/* In-kernel tracing (trace.h), both interfaces: place in struct snapshot_kernel. */
#define K(f) offsetof(struct snapshot_kernel, f)
static const struct counter kernel_counters[] = {
        { "KernelFaults", K(faults) },
        { "KernelFaultLatencyP50Ns", K(fault_p50_ns) },
        { "KernelFaultLatencyP99Ns", K(fault_p99_ns) },
        { "CollapsesOk", K(collapse_ok) },
        { "CollapsesMapped", K(collapse_mapped) },
        { "CollapsesFailed", K(collapse_failed) },
        { "KhugepagedCollapses", K(khugepaged_ok) },
        { "ThpSplits", K(thp_splits) },
};
#undef K

/* Budgets and pressure (snapshot_budget): the first six on both interfaces,
 * the rest on the Manager only. */
#define B(f) offsetof(struct snapshot_budget, f)
static const struct counter budget_counters[] = {
        { "PromotionsSkippedHeadroom", B(promotions_skipped_headroom) },
        { "PromotionsSkippedPressure", B(promotions_skipped_pressure) },
        { "PromotionsSkippedBloat", B(promotions_skipped_bloat) },
        { "BloatBytes", B(bloat_bytes) },
        { "CgroupLimitBytes", B(cgroup_limit_bytes) },
        { "CgroupRoomBytes", B(cgroup_room_bytes) },
        { "PressureLevel", B(pressure_level) },
        { "PressureEvents", B(pressure_events) },
        { "PressureTriggers", B(pressure_triggers) },
        { "PressureReleasedBytes", B(pressure_released_bytes) },
        { "PressureFirstReleaseNs", B(pressure_first_release_ns) },
        { "MemAvailableBytes", B(mem_available_bytes) },
};
#undef B
#define BUDGET_CLIENT_COUNTERS 6
/* Coverage (coverage.h), both interfaces: place in struct coverage. */
#define V(f) offsetof(struct coverage, f)
static const struct counter coverage_counters[] = {
        { "ManagedBytes", V(managed_bytes) },
        { "AnonymousBytes", V(anonymous_bytes) },
        { "CoveragePermille", V(permille) },
};
#undef V

/* The entry of `name` in a counter table, or NULL. */
static const struct counter *table_find(const struct counter *v, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(v[i].name, name) == 0)
                        return &v[i];
        return NULL;
}

#define counter_find(name) table_find(counters, ARRAY_SIZE(counters), name)
#define kernel_counter_find(name) table_find(kernel_counters, ARRAY_SIZE(kernel_counters), name)
#define budget_counter_find(name) table_find(budget_counters, ARRAY_SIZE(budget_counters), name)

/* The place of a backend's counter in the snapshot's arrays (backend.h), or
 * -1; per_client: only the counters that clients have too. */
static int backend_counter_index(const char *property, bool per_client)
{
        const struct backend_counter *bc[BACKEND_COUNTERS_MAX];
        size_t n = backend_counters(bc, BACKEND_COUNTERS_MAX);
        for (size_t i = 0; i < n; i++)
                if (strcmp(bc[i]->property, property) == 0)
                        return per_client && !bc[i]->per_client ? -1 : (int)i;
        return -1;
}
#define coverage_counter_find(name) table_find(coverage_counters, ARRAY_SIZE(coverage_counters), name)

/* The counter's field in the struct it describes (struct hp_stats or struct snapshot_kernel). */
static uint64_t field_value(const void *stats, const struct counter *c)
{
        return *(const uint64_t *)((const char *)stats + c->offset);
}

static int snapshot_missing(sd_bus_error *error)
{
        return sd_bus_error_set(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "No statistics yet; try again");
}

/* ---- org.hugepaged1.Manager -------------------------------------------------- */

/* A Manager counter (type t) from a snapshot; false if property is none. */
static bool manager_counter(const struct snapshot *s, const char *property, uint64_t *ret)
{
        const struct counter *c = counter_find(property), *k = kernel_counter_find(property);
        const struct counter *b = budget_counter_find(property);
        int i;
        if (c)
                *ret = field_value(&s->total, c);
        else if (k)
                *ret = field_value(&s->kernel, k);
        else if (b)
                *ret = field_value(&s->budget, b);
        else if ((b = coverage_counter_find(property)))
                *ret = field_value(&s->coverage, b);
        else if (strcmp(property, "Clients") == 0)
                *ret = s->clients;
        else if ((i = backend_counter_index(property, false)) >= 0)
                *ret = s->backend[i];
        else
                return false;
        return true;
}

static int manager_get_counter(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct snapshot *s = bus_thread_snapshot(userdata);
        uint64_t v = 0;
        int r;

        if (!s)
                return snapshot_missing(error);
        (void)manager_counter(s, property, &v);
        r = sd_bus_message_append(reply, "t", v);
        snapshot_unref(s);
        return r;
}

static int manager_get_setting(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct snapshot *s = bus_thread_snapshot(userdata);
        int r;

        if (!s)
                return snapshot_missing(error);
        if (strcmp(property, "DefaultThreshold") == 0)
                r = sd_bus_message_append(reply, "u", s->threshold);
        else if (strcmp(property, "FaultWindow") == 0)
                r = sd_bus_message_append(reply, "u", s->max_window);
        else if (strcmp(property, "DensePrediction") == 0)
                r = sd_bus_message_append(reply, "b", s->dense_predict);
        else
                r = sd_bus_message_append(reply, "s", s->config_file);
        snapshot_unref(s);
        return r;
}

/* Manager.Tracing and Client.Tracing: whether the kernel counters are measured. */
static int get_tracing(sd_bus *bus, const char *path, const char *interface, const char *property,
                       sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct snapshot *s = bus_thread_snapshot(userdata);
        int r;

        if (!s)
                return snapshot_missing(error);
        r = sd_bus_message_append(reply, "b", s->tracing);
        snapshot_unref(s);
        return r;
}

static int manager_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        return sd_bus_message_append(reply, "s", HP_VERSION_STRING);
}

static int client_path(pid_t pid, char *buf, size_t len)
{
        return snprintf(buf, len, BUS_CLIENT_PATH "/%d", (int)pid);
}

static int method_list_clients(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct snapshot *s = bus_thread_snapshot(userdata);
        sd_bus_message *reply = NULL;
        char path[64];
        int r;

        if (!s)
                return snapshot_missing(error);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(uuso)");
        for (size_t i = 0; r >= 0 && i < s->n; i++) {
                client_path(s->v[i].pid, path, sizeof(path));
                r = sd_bus_message_append(reply, "(uuso)", (uint32_t)s->v[i].pid, (uint32_t)s->v[i].uid,
                                          s->v[i].comm, path);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(reply);
        snapshot_unref(s);
        return r;
}

/* The client's counters, then Tracing (1 or 0) and the kernel counters. */
static int append_client_stats(sd_bus_message *reply, const struct snapshot *s, const struct snapshot_client *c)
{
        int r = sd_bus_message_open_container(reply, 'a', "{st}");
        for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(counters); i++)
                r = sd_bus_message_append(reply, "{st}", counters[i].name, field_value(&c->s, &counters[i]));
        if (r >= 0)
                r = sd_bus_message_append(reply, "{st}", "Tracing", (uint64_t)s->tracing);
        for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(kernel_counters); i++)
                r = sd_bus_message_append(reply, "{st}", kernel_counters[i].name,
                                          field_value(&c->kernel, &kernel_counters[i]));
        for (size_t i = 0; r >= 0 && i < BUDGET_CLIENT_COUNTERS; i++)
                r = sd_bus_message_append(reply, "{st}", budget_counters[i].name,
                                          field_value(&c->budget, &budget_counters[i]));
        for (size_t i = 0; r >= 0 && i < s->n_counters; i++)
                if (s->counters[i]->per_client)
                        r = sd_bus_message_append(reply, "{st}", s->counters[i]->property, c->backend[i]);
        for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(coverage_counters); i++)
                r = sd_bus_message_append(reply, "{st}", coverage_counters[i].name,
                                          field_value(&c->coverage, &coverage_counters[i]));
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int method_get_client_stats(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        sd_bus_message *reply = NULL;
        uint32_t pid;
        int r;

        r = sd_bus_message_read(m, "u", &pid);
        if (r < 0)
                return r;
        struct snapshot *s = bus_thread_snapshot(userdata);
        const struct snapshot_client *c = snapshot_find(s, (pid_t)pid);
        if (!c) {
                snapshot_unref(s);
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_CLIENT, "No client with pid %u", pid);
        }
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = append_client_stats(reply, s, c);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(reply);
        snapshot_unref(s);
        return r;
}

/* One histogram as (name, count, sum in ns, [(bucket upper bound in ns, count)]):
 * the non-empty buckets of stats.h, in order, counts not cumulative. */
static int append_histogram(sd_bus_message *reply, const char *name, const struct histogram *h)
{
        int r = sd_bus_message_open_container(reply, 'r', "stta(tt)");
        if (r >= 0)
                r = sd_bus_message_append(reply, "stt", name, h->count, h->sum);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(tt)");
        for (unsigned b = 0; r >= 0 && b < HIST_USED_BUCKETS; b++)
                if (h->bucket[b])
                        r = sd_bus_message_append(reply, "(tt)", histogram_bucket_upper(b), (uint64_t)h->bucket[b]);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int method_get_latency_histograms(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct snapshot *s = bus_thread_snapshot(userdata);
        sd_bus_message *reply = NULL;
        int r;

        if (!s)
                return snapshot_missing(error);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(stta(tt))");
        if (r >= 0)
                r = append_histogram(reply, "FaultLatency", &s->fault_latency_ns);
        if (r >= 0)
                r = append_histogram(reply, "PromotionLatency", &s->promotion_latency_ns);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(reply);
        snapshot_unref(s);
        return r;
}

/* Who is calling: the main thread decides whether they may (control.c). */
static int command_new(sd_bus_message *m, enum bus_command_type type, struct bus_command **ret,
                       sd_bus_error *error)
{
        sd_bus_creds *creds = NULL;
        const gid_t *gids = NULL;
        int r;

        struct bus_command *cmd = calloc(1, sizeof(*cmd));
        if (!cmd)
                return -ENOMEM;
        cmd->type = type;
        cmd->dense_predict = -1;
        cmd->euid = (uid_t)-1;
        cmd->egid = (gid_t)-1;
        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID | SD_BUS_CREDS_EGID | SD_BUS_CREDS_SUPPLEMENTARY_GIDS |
                                                 SD_BUS_CREDS_AUGMENT, &creds);
        if (r >= 0) {
                if (sd_bus_creds_get_euid(creds, &cmd->euid) < 0)
                        cmd->euid = (uid_t)-1;
                if (sd_bus_creds_get_egid(creds, &cmd->egid) < 0)
                        cmd->egid = (gid_t)-1;
                int n = sd_bus_creds_get_supplementary_gids(creds, &gids);
                if (n > 0 && (cmd->gids = calloc((size_t)n, sizeof(gid_t)))) {
                        memcpy(cmd->gids, gids, (size_t)n * sizeof(gid_t));
                        cmd->n_gids = n;
                }
        }
        sd_bus_creds_unref(creds);
        if (cmd->euid == (uid_t)-1) {
                bus_command_free(cmd);
                return sd_bus_error_set(error, BUS_ERROR_ACCESS_DENIED, "Cannot determine who is calling");
        }
        cmd->message = sd_bus_message_ref(m);
        *ret = cmd;
        return 0;
}

static int command_submit(struct bus_thread *bt, struct bus_command *cmd, sd_bus_error *error)
{
        int r = bus_thread_submit(bt, cmd);
        if (r < 0) {
                bus_command_free(cmd);
                return sd_bus_error_set(error, BUS_ERROR_FAILED, "hugepaged is shutting down");
        }
        return 1;       /* answered later, from bus_reply_command() */
}

static int method_set_policy(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct bus_command *cmd = NULL;
        uint32_t pid, threshold = 0, window = 0;
        int dense = -1, r;

        r = sd_bus_message_read(m, "u", &pid);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key;
                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                if (strcmp(key, "Threshold") == 0 || strcmp(key, "FaultWindow") == 0) {
                        uint32_t v;
                        r = sd_bus_message_read(m, "v", "u", &v);
                        if (r < 0)
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "%s must be of type u", key);
                        if (v < 1 || v > HP_REGION_PAGES)
                                return sd_bus_error_setf(error, BUS_ERROR_INVALID_POLICY,
                                                         "%s %u is outside 1..%u pages", key, v, HP_REGION_PAGES);
                        if (key[0] == 'T')
                                threshold = v;
                        else
                                window = v;
                } else if (strcmp(key, "DensePrediction") == 0) {
                        int b;
                        r = sd_bus_message_read(m, "v", "b", &b);
                        if (r < 0)
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "%s must be of type b", key);
                        dense = !!b;
                } else
                        return sd_bus_error_setf(error, BUS_ERROR_INVALID_POLICY,
                                                 "Unknown policy key '%s' (known: Threshold, DensePrediction, FaultWindow)",
                                                 key);
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        r = command_new(m, BUS_COMMAND_SET_POLICY, &cmd, error);
        if (r < 0)
                return r;
        cmd->pid = (pid_t)pid;
        cmd->threshold = threshold;
        cmd->max_window = window;
        cmd->dense_predict = dense;
        return command_submit(userdata, cmd, error);
}

static int method_reload(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct bus_command *cmd = NULL;
        int r = command_new(m, BUS_COMMAND_RELOAD, &cmd, error);
        if (r < 0)
                return r;
        return command_submit(userdata, cmd, error);
}

int bus_reply_command(struct bus_command *cmd)
{
        sd_bus_message *m = cmd->message;
        if (!m)
                return 0;
        if (cmd->error_name)
                return sd_bus_reply_method_errorf(m, cmd->error_name, "%s", cmd->error_message);
        return sd_bus_reply_method_return(m, NULL);
}

/* Counters and Tracing announce their changes: bus_emit_changes(), once per snapshot. */
#define COUNTER(name, getter) SD_BUS_PROPERTY(name, "t", getter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", manager_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ConfigFile", "s", manager_get_setting, 0, 0),
        SD_BUS_PROPERTY("DefaultThreshold", "u", manager_get_setting, 0, 0),
        SD_BUS_PROPERTY("DensePrediction", "b", manager_get_setting, 0, 0),
        SD_BUS_PROPERTY("FaultWindow", "u", manager_get_setting, 0, 0),
        COUNTER("FaultsServed", manager_get_counter),
        COUNTER("FaultLatencyP50Ns", manager_get_counter),
        COUNTER("FaultLatencyP99Ns", manager_get_counter),
        COUNTER("PagesPopulated", manager_get_counter),
        COUNTER("RegionsReserved", manager_get_counter),
        COUNTER("PagesReservedUnused", manager_get_counter),
        COUNTER("Promotions", manager_get_counter),
        COUNTER("PromotionsFailed", manager_get_counter),
        COUNTER("PromotionLatencyP50Ns", manager_get_counter),
        COUNTER("PromotionLatencyP99Ns", manager_get_counter),
        COUNTER("RegionsHuge", manager_get_counter),
        COUNTER("ReservationsReleased", manager_get_counter),
        COUNTER("ManagedBytes", manager_get_counter),
        COUNTER("AnonymousBytes", manager_get_counter),
        COUNTER("CoveragePermille", manager_get_counter),
        COUNTER("Clients", manager_get_counter),
        COUNTER("Ranges", manager_get_counter),
        SD_BUS_PROPERTY("Tracing", "b", get_tracing, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        COUNTER("KernelFaults", manager_get_counter),
        COUNTER("KernelFaultLatencyP50Ns", manager_get_counter),
        COUNTER("KernelFaultLatencyP99Ns", manager_get_counter),
        COUNTER("CollapsesOk", manager_get_counter),
        COUNTER("CollapsesMapped", manager_get_counter),
        COUNTER("CollapsesFailed", manager_get_counter),
        COUNTER("KhugepagedCollapses", manager_get_counter),
        COUNTER("ThpSplits", manager_get_counter),
        COUNTER("PromotionsSkippedHeadroom", manager_get_counter),
        COUNTER("PromotionsSkippedPressure", manager_get_counter),
        COUNTER("PromotionsSkippedBloat", manager_get_counter),
        COUNTER("BloatBytes", manager_get_counter),
        COUNTER("PressureLevel", manager_get_counter),
        COUNTER("PressureEvents", manager_get_counter),
        COUNTER("PressureTriggers", manager_get_counter),
        COUNTER("PressureReleasedBytes", manager_get_counter),
        COUNTER("PressureFirstReleaseNs", manager_get_counter),
        COUNTER("MemAvailableBytes", manager_get_counter),
        SD_BUS_METHOD_WITH_NAMES("ListClients", NULL, , "a(uuso)", SD_BUS_PARAM(clients),
                                 method_list_clients, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetClientStats", "u", SD_BUS_PARAM(pid), "a{st}", SD_BUS_PARAM(stats),
                                 method_get_client_stats, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetLatencyHistograms", NULL, , "a(stta(tt))", SD_BUS_PARAM(histograms),
                                 method_get_latency_histograms, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("SetPolicy", "ua{sv}", SD_BUS_PARAM(pid) SD_BUS_PARAM(policy), NULL,
                                 , method_set_policy, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reload", NULL, NULL, method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("ClientAdded", "uso", SD_BUS_PARAM(pid) SD_BUS_PARAM(command) SD_BUS_PARAM(path), 0),
        SD_BUS_SIGNAL_WITH_NAMES("ClientRemoved", "uo", SD_BUS_PARAM(pid) SD_BUS_PARAM(path), 0),
        SD_BUS_VTABLE_END,
};

/* ---- org.hugepaged1.Client --------------------------------------------------- */

static int pid_from_path(const char *path, pid_t *ret)
{
        const char *p = path + strlen(BUS_CLIENT_PATH);
        char *end;
        if (strncmp(path, BUS_CLIENT_PATH "/", strlen(BUS_CLIENT_PATH) + 1) != 0)
                return -ENOENT;
        p++;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || *end || v <= 0 || v > 0x7fffffff)
                return -ENOENT;
        *ret = (pid_t)v;
        return 0;
}

/* The snapshot and the client an object path names; error if it is gone. */
static int client_lookup(const char *path, void *userdata, struct snapshot **ret_s,
                         const struct snapshot_client **ret_c, sd_bus_error *error)
{
        pid_t pid;
        if (pid_from_path(path, &pid) < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "No client object %s", path);
        struct snapshot *s = bus_thread_snapshot(userdata);
        const struct snapshot_client *c = snapshot_find(s, pid);
        if (!c) {
                snapshot_unref(s);
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_CLIENT, "Client %d has gone", (int)pid);
        }
        *ret_s = s;
        *ret_c = c;
        return 0;
}

/* A Client counter (type t) from its snapshot entry; false if property is none. */
static bool client_counter(const struct snapshot_client *c, const char *property, uint64_t *ret)
{
        const struct counter *k = counter_find(property), *kk = kernel_counter_find(property);
        const struct counter *b = budget_counter_find(property);
        int i;
        if (k && strcmp(property, "Ranges") != 0)
                *ret = field_value(&c->s, k);
        else if (kk)
                *ret = field_value(&c->kernel, kk);
        else if (b && b < budget_counters + BUDGET_CLIENT_COUNTERS)
                *ret = field_value(&c->budget, b);
        else if ((b = coverage_counter_find(property)))
                *ret = field_value(&c->coverage, b);
        else if ((i = backend_counter_index(property, true)) >= 0)
                *ret = c->backend[i];
        else
                return false;
        return true;
}

static int client_get(sd_bus *bus, const char *path, const char *interface, const char *property,
                      sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct snapshot *s;
        const struct snapshot_client *c;
        int r = client_lookup(path, userdata, &s, &c, error);
        if (r < 0)
                return r;

        uint64_t v;
        if (client_counter(c, property, &v))
                r = sd_bus_message_append(reply, "t", v);
        else if (strcmp(property, "Pid") == 0)
                r = sd_bus_message_append(reply, "u", (uint32_t)c->pid);
        else if (strcmp(property, "Uid") == 0)
                r = sd_bus_message_append(reply, "u", (uint32_t)c->uid);
        else if (strcmp(property, "Command") == 0)
                r = sd_bus_message_append(reply, "s", c->comm);
        else if (strcmp(property, "Executable") == 0)
                r = sd_bus_message_append(reply, "s", c->exe);
        else if (strcmp(property, "Threshold") == 0)
                r = sd_bus_message_append(reply, "u", (uint32_t)c->s.threshold);
        else if (strcmp(property, "FaultWindow") == 0)
                r = sd_bus_message_append(reply, "u", c->max_window);
        else if (strcmp(property, "DensePrediction") == 0)
                r = sd_bus_message_append(reply, "b", c->dense_predict);
        else if (strcmp(property, "PolicyExplicit") == 0)
                r = sd_bus_message_append(reply, "b", c->policy_explicit);
        else if (strcmp(property, "Ranges") == 0) {
                r = sd_bus_message_open_container(reply, 'a', "(ttu)");
                for (size_t i = 0; r >= 0 && i < c->n_ranges; i++)
                        r = sd_bus_message_append(reply, "(ttu)", c->ranges[i].start, c->ranges[i].end,
                                                  c->ranges[i].threshold);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        } else
                r = sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", property);
        snapshot_unref(s);
        return r;
}

static int client_method_get_stats(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct snapshot *s;
        const struct snapshot_client *c;
        sd_bus_message *reply = NULL;
        int r = client_lookup(sd_bus_message_get_path(m), userdata, &s, &c, error);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = append_client_stats(reply, s, c);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(reply);
        snapshot_unref(s);
        return r;
}

#define CLIENT_COUNTER(name) SD_BUS_PROPERTY(name, "t", client_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

static const sd_bus_vtable client_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Pid", "u", client_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Uid", "u", client_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Command", "s", client_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Executable", "s", client_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Threshold", "u", client_get, 0, 0),
        SD_BUS_PROPERTY("DensePrediction", "b", client_get, 0, 0),
        SD_BUS_PROPERTY("FaultWindow", "u", client_get, 0, 0),
        SD_BUS_PROPERTY("PolicyExplicit", "b", client_get, 0, 0),
        SD_BUS_PROPERTY("Ranges", "a(ttu)", client_get, 0, 0),
        CLIENT_COUNTER("FaultsServed"),
        CLIENT_COUNTER("FaultLatencyP50Ns"),
        CLIENT_COUNTER("FaultLatencyP99Ns"),
        CLIENT_COUNTER("PagesPopulated"),
        CLIENT_COUNTER("RegionsReserved"),
        CLIENT_COUNTER("PagesReservedUnused"),
        CLIENT_COUNTER("Promotions"),
        CLIENT_COUNTER("PromotionsFailed"),
        CLIENT_COUNTER("PromotionLatencyP50Ns"),
        CLIENT_COUNTER("PromotionLatencyP99Ns"),
        CLIENT_COUNTER("RegionsHuge"),
        CLIENT_COUNTER("ReservationsReleased"),
        SD_BUS_PROPERTY("Tracing", "b", get_tracing, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        CLIENT_COUNTER("ManagedBytes"),
        CLIENT_COUNTER("AnonymousBytes"),
        CLIENT_COUNTER("CoveragePermille"),
        CLIENT_COUNTER("KernelFaults"),
        CLIENT_COUNTER("KernelFaultLatencyP50Ns"),
        CLIENT_COUNTER("KernelFaultLatencyP99Ns"),
        CLIENT_COUNTER("CollapsesOk"),
        CLIENT_COUNTER("CollapsesMapped"),
        CLIENT_COUNTER("CollapsesFailed"),
        CLIENT_COUNTER("KhugepagedCollapses"),
        CLIENT_COUNTER("ThpSplits"),
        CLIENT_COUNTER("PromotionsSkippedHeadroom"),
        CLIENT_COUNTER("PromotionsSkippedPressure"),
        CLIENT_COUNTER("PromotionsSkippedBloat"),
        CLIENT_COUNTER("BloatBytes"),
        CLIENT_COUNTER("CgroupLimitBytes"),
        CLIENT_COUNTER("CgroupRoomBytes"),
        SD_BUS_METHOD_WITH_NAMES("GetStats", NULL, , "a{st}", SD_BUS_PARAM(stats),
                                 client_method_get_stats, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

static int client_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                       sd_bus_error *error)
{
        pid_t pid;
        if (pid_from_path(path, &pid) < 0)
                return 0;
        struct snapshot *s = bus_thread_snapshot(userdata);
        bool there = snapshot_find(s, pid) != NULL;
        snapshot_unref(s);
        if (!there)
                return 0;
        *found = userdata;
        return 1;
}

static int client_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error)
{
        struct snapshot *s = bus_thread_snapshot(userdata);
        size_t n = s ? s->n : 0;
        char **v = calloc(n + 1, sizeof(char *));
        char buf[64];

        if (!v) {
                snapshot_unref(s);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                client_path(s->v[i].pid, buf, sizeof(buf));
                if (!(v[i] = strdup(buf))) {
                        for (size_t j = 0; j < i; j++)
                                free(v[j]);
                        free(v);
                        snapshot_unref(s);
                        return -ENOMEM;
                }
        }
        snapshot_unref(s);
        *nodes = v;
        return 0;
}

/* ---- setup, signals, introspection ------------------------------------------ */

/* ---- the backends' counters ------------------------------------------------------ */

/*
 * Each backend's counters (backend.h) become properties, "t", at the end of
 * an interface's properties: on the Manager all of them, on each Client
 * those counted per client. Built once; sd-bus keeps pointers into them.
 */
static sd_bus_vtable *manager_full, *client_full;
static pthread_once_t vtables_once = PTHREAD_ONCE_INIT;

static sd_bus_vtable *with_backend_counters(const sd_bus_vtable *v, bool per_client_only,
                                            sd_bus_property_get_t get)
{
        const struct backend_counter *bc[BACKEND_COUNTERS_MAX];
        size_t nbc = backend_counters(bc, BACKEND_COUNTERS_MAX), n = 0, k = 0;

        while (v[n].type != _SD_BUS_VTABLE_END)
                n++;
        sd_bus_vtable *out = calloc(n + nbc + 1, sizeof(*out));
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++)         /* the start and the properties */
                if (i == 0 || v[i].type == _SD_BUS_VTABLE_PROPERTY)
                        out[k++] = v[i];
        for (size_t j = 0; j < nbc; j++)
                if (!per_client_only || bc[j]->per_client)
                        out[k++] = (sd_bus_vtable)SD_BUS_PROPERTY(bc[j]->property, "t", get, 0,
                                                                  SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE);
        for (size_t i = 1; i < n; i++)         /* methods and signals */
                if (v[i].type != _SD_BUS_VTABLE_PROPERTY)
                        out[k++] = v[i];
        out[k] = v[n];
        return out;
}

static void build_vtables(void)
{
        manager_full = with_backend_counters(manager_vtable, false, manager_get_counter);
        client_full = with_backend_counters(client_vtable, true, client_get);
}

static int vtables(void)
{
        pthread_once(&vtables_once, build_vtables);
        return manager_full && client_full ? 0 : -ENOMEM;
}

int bus_add_objects(sd_bus *bus, struct bus_thread *bt)
{
        int r = vtables();
        if (r >= 0)
                r = sd_bus_add_object_vtable(bus, NULL, BUS_PATH, BUS_MANAGER_IFACE, manager_full, bt);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(bus, NULL, BUS_CLIENT_PATH, BUS_CLIENT_IFACE, client_full,
                                               client_find, bt);
        if (r >= 0)
                r = sd_bus_add_node_enumerator(bus, NULL, BUS_CLIENT_PATH, client_enumerate, bt);
        return r;
}

int bus_emit_client_event(sd_bus *bus, const struct bus_event *e)
{
        char path[64];
        client_path(e->pid, path, sizeof(path));
        if (e->added)
                return sd_bus_emit_signal(bus, BUS_PATH, BUS_MANAGER_IFACE, "ClientAdded", "uso", (uint32_t)e->pid,
                                          e->comm, path);
        return sd_bus_emit_signal(bus, BUS_PATH, BUS_MANAGER_IFACE, "ClientRemoved", "uo", (uint32_t)e->pid, path);
}

/*
 * The names of vtable's change-announcing properties whose value differs
 * between two snapshots (value(snapshot side, name, &v) reads a counter;
 * Tracing is compared by tracing_old/new). NULL-terminated, in v; returns
 * how many.
 */
static size_t changed_names(const sd_bus_vtable *vtable, bool (*value)(const void *, const char *, uint64_t *),
                            const void *old, const void *new, bool tracing_old, bool tracing_new,
                            const char **v, size_t max)
{
        size_t n = 0;
        for (const sd_bus_vtable *p = vtable; p->type != _SD_BUS_VTABLE_END && n + 1 < max; p++) {
                if (p->type != _SD_BUS_VTABLE_PROPERTY || !(p->flags & SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE))
                        continue;
                const char *name = p->x.property.member;
                uint64_t a = 0, b = 0;
                bool differs = strcmp(name, "Tracing") == 0
                                       ? tracing_old != tracing_new
                                       : value(old, name, &a) && value(new, name, &b) && a != b;
                if (differs)
                        v[n++] = name;
        }
        v[n] = NULL;
        return n;
}

static bool manager_value(const void *s, const char *name, uint64_t *ret)
{
        return manager_counter(s, name, ret);
}

static bool client_value(const void *c, const char *name, uint64_t *ret)
{
        return client_counter(c, name, ret);
}

int bus_emit_changes(sd_bus *bus, const struct snapshot *old, const struct snapshot *new)
{
        const char *names[128];
        char path[64];
        int r = 0, k;

        if (vtables() < 0)
                return -ENOMEM;
        if (changed_names(manager_full, manager_value, old, new, old->tracing, new->tracing, names,
                          ARRAY_SIZE(names)) > 0)
                r = sd_bus_emit_properties_changed_strv(bus, BUS_PATH, BUS_MANAGER_IFACE, (char **)names);
        /* Clients in both snapshots, the same connection: both sorted by pid. */
        for (size_t i = 0, j = 0; i < old->n && j < new->n;) {
                const struct snapshot_client *a = &old->v[i], *b = &new->v[j];
                if (a->pid != b->pid) {
                        a->pid < b->pid ? i++ : j++;
                        continue;
                }
                i++, j++;
                if (a->id != b->id || changed_names(client_full, client_value, a, b, old->tracing, new->tracing,
                                                    names, ARRAY_SIZE(names)) == 0)
                        continue;
                client_path(b->pid, path, sizeof(path));
                k = sd_bus_emit_properties_changed_strv(bus, path, BUS_CLIENT_IFACE, (char **)names);
                if (k < 0 && r >= 0)
                        r = k;
        }
        return r;
}

int bus_introspect(FILE *f)
{
        fputs("<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n"
              "\"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n"
              "<node>\n", f);
        if (vtables() < 0)
                return -ENOMEM;
        bus_introspect_interface(f, BUS_MANAGER_IFACE, manager_full);
        bus_introspect_interface(f, BUS_CLIENT_IFACE, client_full);
        fputs("</node>\n", f);
        return fflush(f) == 0 ? 0 : -errno;
}
