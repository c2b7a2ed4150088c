/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hugepagectl: look at and steer a running hugepaged over D-Bus
 * (org.hugepaged1, see org.hugepaged1(5)). Tables for people by default;
 * --json for scripts, with the counter names of DESIGN.md as keys.
 *
 * Owns: the command line, talking to the bus, formatting. Must never guess:
 * every number shown comes from the daemon, and an absent daemon or a
 * refused request is reported as such with a non-zero exit status.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#define BUS_NAME "org.hugepaged1"
#define BUS_PATH "/org/hugepaged1"
#define MANAGER_IFACE "org.hugepaged1.Manager"
#define CLIENT_IFACE "org.hugepaged1.Client"

#define _cleanup_(f) __attribute__((cleanup(f)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static enum { BUS_SYSTEM, BUS_USER, BUS_ADDRESS } arg_bus = BUS_SYSTEM;
static const char *arg_address;
static bool arg_json;

static const char *bus_name(void)
{
        return arg_bus == BUS_SYSTEM ? "the system bus" : arg_bus == BUS_USER ? "the user bus" : arg_address;
}

static void bus_unrefp(sd_bus **b) { sd_bus_flush_close_unref(*b); }
static void msg_unrefp(sd_bus_message **m) { sd_bus_message_unref(*m); }
static void freep(void *p) { free(*(void **)p); }

/* ---- properties --------------------------------------------------------------- */

struct prop {
        char name[64];
        char type;              /* 't', 'u', 'b', 's', or 'a' for Ranges */
        uint64_t u;
        char s[256];
};

struct range {
        uint64_t start, end;
        uint32_t threshold;
};

struct props {
        struct prop v[64];
        size_t n;
        struct range *ranges;
        size_t n_ranges;
};

static void props_done(struct props *p)
{
        free(p->ranges);
}

static const struct prop *prop_get(const struct props *p, const char *name)
{
        for (size_t i = 0; i < p->n; i++)
                if (strcmp(p->v[i].name, name) == 0)
                        return &p->v[i];
        return NULL;
}

static uint64_t prop_u(const struct props *p, const char *name)
{
        const struct prop *x = prop_get(p, name);
        return x ? x->u : 0;
}

static const char *prop_s(const struct props *p, const char *name)
{
        const struct prop *x = prop_get(p, name);
        return x ? x->s : "";
}

static int report_call_error(const sd_bus_error *e, int r, const char *what)
{
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                fprintf(stderr, "hugepagectl: hugepaged is not running on %s (nobody owns %s)\n", bus_name(),
                        BUS_NAME);
        else if (sd_bus_error_has_name(e, "org.hugepaged1.Error.NoSuchClient") ||
                 sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT))
                fprintf(stderr, "hugepagectl: %s\n", e->message ? e->message : "no such client");
        else if (sd_bus_error_is_set(e))
                fprintf(stderr, "hugepagectl: %s: %s (%s)\n", what, e->message ? e->message : "failed", e->name);
        else
                fprintf(stderr, "hugepagectl: %s: %s\n", what, strerror(-r));
        return r < 0 ? r : -EIO;
}

/* GetAll of iface at path; with gone_ok, a client that has gone is -ENOENT, silently. */
static int get_all_flags(sd_bus *bus, const char *path, const char *iface, struct props *ret, bool gone_ok)
{
        _cleanup_(msg_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        memset(ret, 0, sizeof(*ret));
        r = sd_bus_call_method(bus, BUS_NAME, path, "org.freedesktop.DBus.Properties", "GetAll", &error, &reply,
                               "s", iface);
        if (r < 0 && gone_ok && sd_bus_error_has_names(&error, "org.hugepaged1.Error.NoSuchClient",
                                                         SD_BUS_ERROR_UNKNOWN_OBJECT, SD_BUS_ERROR_UNKNOWN_INTERFACE)) {
                sd_bus_error_free(&error);
                return -ENOENT;
        }
        if (r < 0) {
                r = report_call_error(&error, r, "reading properties");
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *name, *contents;
                struct prop *p = ret->n < ARRAY_SIZE(ret->v) ? &ret->v[ret->n] : NULL;
                char type;

                if ((r = sd_bus_message_read(reply, "s", &name)) < 0 ||
                    (r = sd_bus_message_peek_type(reply, &type, &contents)) < 0)
                        break;
                if (!p) {
                        r = sd_bus_message_skip(reply, "v");
                } else if (strcmp(contents, "t") == 0 || strcmp(contents, "u") == 0 || strcmp(contents, "b") == 0) {
                        uint64_t t = 0;
                        uint32_t u = 0;
                        int b = 0;
                        r = contents[0] == 't' ? sd_bus_message_read(reply, "v", "t", &t)
                          : contents[0] == 'u' ? sd_bus_message_read(reply, "v", "u", &u)
                                               : sd_bus_message_read(reply, "v", "b", &b);
                        p->u = contents[0] == 't' ? t : contents[0] == 'u' ? u : (uint64_t)b;
                        p->type = contents[0];
                } else if (strcmp(contents, "s") == 0) {
                        const char *s;
                        r = sd_bus_message_read(reply, "v", "s", &s);
                        if (r >= 0)
                                snprintf(p->s, sizeof(p->s), "%s", s);
                        p->type = 's';
                } else if (strcmp(contents, "a(ttu)") == 0) {
                        p->type = 'a';
                        r = sd_bus_message_enter_container(reply, 'v', "a(ttu)");
                        if (r >= 0)
                                r = sd_bus_message_enter_container(reply, 'a', "(ttu)");
                        struct range x;
                        while (r >= 0 && (r = sd_bus_message_read(reply, "(ttu)", &x.start, &x.end, &x.threshold)) > 0) {
                                struct range *v = realloc(ret->ranges, (ret->n_ranges + 1) * sizeof(*v));
                                if (!v) {
                                        r = -ENOMEM;
                                        break;
                                }
                                ret->ranges = v;
                                v[ret->n_ranges++] = x;
                        }
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                        p->u = ret->n_ranges;
                } else {
                        r = sd_bus_message_skip(reply, "v");
                        p = NULL;
                }
                if (r < 0)
                        break;
                if (p) {
                        snprintf(p->name, sizeof(p->name), "%s", name);
                        ret->n++;
                }
                r = sd_bus_message_exit_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0) {
                fprintf(stderr, "hugepagectl: malformed reply from hugepaged: %s\n", strerror(-r));
                props_done(ret);
                return r;
        }
        return 0;
}

static int get_all(sd_bus *bus, const char *path, const char *iface, struct props *ret)
{
        return get_all_flags(bus, path, iface, ret, false);
}

/* ---- formatting ----------------------------------------------------------------- */

/* "FaultLatencyP50Ns" -> "fault_latency_p50_ns": the names of DESIGN.md. */
static void snake(const char *camel, char *buf, size_t len)
{
        size_t k = 0;
        for (const char *p = camel; *p && k + 2 < len; p++) {
                if (*p >= 'A' && *p <= 'Z') {
                        if (p != camel)
                                buf[k++] = '_';
                        buf[k++] = (char)(*p - 'A' + 'a');
                } else
                        buf[k++] = *p;
        }
        buf[k] = '\0';
}

static const char *fmt_bytes(uint64_t v, char *buf, size_t len)
{
        static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        double d = (double)v;
        unsigned i = 0;
        while (d >= 1024 && i + 1 < ARRAY_SIZE(unit)) {
                d /= 1024;
                i++;
        }
        if (i == 0)
                snprintf(buf, len, "%" PRIu64 " B", v);
        else
                snprintf(buf, len, "%.1f %s", d, unit[i]);
        return buf;
}

static const char *fmt_ns(uint64_t ns, char *buf, size_t len)
{
        if (ns == 0)
                snprintf(buf, len, "-");
        else if (ns < 1000)
                snprintf(buf, len, "%" PRIu64 " ns", ns);
        else if (ns < 1000000)
                snprintf(buf, len, "%.1f us", (double)ns / 1e3);
        else
                snprintf(buf, len, "%.1f ms", (double)ns / 1e6);
        return buf;
}

static void json_string(const char *s)
{
        putchar('"');
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c < 0x20)
                        printf("\\u%04x", c);
                else
                        putchar(c);
        }
        putchar('"');
}

/* One JSON object of every property (ranges as a list), keys in snake_case. */
static void json_props(const struct props *p, const char *indent)
{
        char key[96];
        printf("{");
        for (size_t i = 0; i < p->n; i++) {
                snake(p->v[i].name, key, sizeof(key));
                printf("%s\n%s  \"%s\": ", i ? "," : "", indent, key);
                switch (p->v[i].type) {
                case 's':
                        json_string(p->v[i].s);
                        break;
                case 'b':
                        printf("%s", p->v[i].u ? "true" : "false");
                        break;
                case 'a':
                        printf("[");
                        for (size_t j = 0; j < p->n_ranges; j++)
                                printf("%s{\"start\": %" PRIu64 ", \"end\": %" PRIu64 ", \"threshold\": %" PRIu32 "}",
                                       j ? ", " : "", p->ranges[j].start, p->ranges[j].end, p->ranges[j].threshold);
                        printf("]");
                        break;
                default:
                        printf("%" PRIu64, p->v[i].u);
                }
        }
        printf("\n%s}", indent);
}

/* ---- commands ------------------------------------------------------------------- */

/* The counters of DESIGN.md, in its order. */
static const char *const design_counters[] = {
        "FaultsServed", "FaultLatencyP50Ns", "FaultLatencyP99Ns", "PagesPopulated", "RegionsReserved",
        "PagesReservedUnused", "Promotions", "PromotionsFailed", "PromotionLatencyP50Ns",
        "PromotionLatencyP99Ns", "RegionsHuge", "ReservationsReleased", "Clients", "Ranges",
};

/* In-kernel tracing (eBPF): Tracing, then its counters; all 0 when it is off. */
static const char *const kernel_counters[] = {
        "KernelFaults", "KernelFaultLatencyP50Ns", "KernelFaultLatencyP99Ns", "CollapsesOk", "CollapsesMapped",
        "CollapsesFailed", "KhugepagedCollapses", "ThpSplits",
};

/* Budgets and memory pressure: promotions held back and why, bloat, the level. */
static const char *const budget_counters[] = {
        "PromotionsSkippedHeadroom", "PromotionsSkippedPressure", "PromotionsSkippedBloat", "BloatBytes",
        "PressureLevel", "PressureEvents", "PressureTriggers", "PressureReleasedBytes", "PressureFirstReleaseNs",
        "MemAvailableBytes",
};

static const char *const pressure_names[] = { "none", "some", "high" };

/* "tracing on: 1234 faults slept (p50 25.0 us, p99 180.0 us); ..." or "tracing off". */
static void print_kernel(const struct props *p, const char *prefix)
{
        char a[32], b[32];
        const struct prop *t = prop_get(p, "Tracing");
        if (!t)
                return;         /* a daemon without these properties */
        if (!t->u) {
                printf("%stracing off\n", prefix);
                return;
        }
        printf("%stracing on: %" PRIu64 " faults slept (p50 %s, p99 %s); collapses %" PRIu64 " ok, %" PRIu64
               " mapped, %" PRIu64 " failed; %" PRIu64 " by khugepaged; %" PRIu64 " THP splits\n",
               prefix, prop_u(p, "KernelFaults"), fmt_ns(prop_u(p, "KernelFaultLatencyP50Ns"), a, sizeof(a)),
               fmt_ns(prop_u(p, "KernelFaultLatencyP99Ns"), b, sizeof(b)), prop_u(p, "CollapsesOk"),
               prop_u(p, "CollapsesMapped"), prop_u(p, "CollapsesFailed"), prop_u(p, "KhugepagedCollapses"),
               prop_u(p, "ThpSplits"));
}

/* "97.1% of 460 MiB anonymous memory managed (446 MiB)", or "not measured yet". */
static const char *fmt_coverage(const struct props *p, char *buf, size_t len)
{
        char a[32], b[32];
        uint64_t anon = prop_u(p, "AnonymousBytes");

        if (!prop_get(p, "AnonymousBytes"))
                snprintf(buf, len, "-");
        else if (!anon)
                snprintf(buf, len, "not measured yet");
        else
                snprintf(buf, len, "%.1f%% of %s anonymous memory managed (%s)",
                         prop_u(p, "CoveragePermille") / 10.0, fmt_bytes(anon, a, sizeof(a)),
                         fmt_bytes(prop_u(p, "ManagedBytes"), b, sizeof(b)));
        return buf;
}

static int cmd_stats(sd_bus *bus)
{
        struct props p;
        char key[96];
        int r = get_all(bus, BUS_PATH, MANAGER_IFACE, &p);
        if (r < 0)
                return r;
        if (arg_json)
                printf("{");
        for (size_t i = 0; i < ARRAY_SIZE(design_counters); i++) {
                snake(design_counters[i], key, sizeof(key));
                if (arg_json)
                        printf("%s\n  \"%s\": %" PRIu64, i ? "," : "", key, prop_u(&p, design_counters[i]));
                else
                        printf("%-26s %" PRIu64 "\n", key, prop_u(&p, design_counters[i]));
        }
        if (arg_json)
                printf(",\n  \"tracing\": %s", prop_u(&p, "Tracing") ? "true" : "false");
        else
                printf("%-26s %s\n", "tracing", prop_u(&p, "Tracing") ? "on" : "off");
        for (size_t i = 0; i < ARRAY_SIZE(kernel_counters); i++) {
                snake(kernel_counters[i], key, sizeof(key));
                if (arg_json)
                        printf(",\n  \"%s\": %" PRIu64, key, prop_u(&p, kernel_counters[i]));
                else
                        printf("%-26s %" PRIu64 "\n", key, prop_u(&p, kernel_counters[i]));
        }
        for (size_t i = 0; i < ARRAY_SIZE(budget_counters); i++) {
                snake(budget_counters[i], key, sizeof(key));
                if (arg_json)
                        printf(",\n  \"%s\": %" PRIu64, key, prop_u(&p, budget_counters[i]));
                else
                        printf("%-26s %" PRIu64 "\n", key, prop_u(&p, budget_counters[i]));
        }
        if (arg_json)
                printf("\n}\n");
        props_done(&p);
        return 0;
}

struct client_row {
        uint32_t pid, uid;
        char command[32];
        char path[128];
};

static int list_clients(sd_bus *bus, struct client_row **ret, size_t *n)
{
        _cleanup_(msg_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        struct client_row *v = NULL;
        const char *comm, *path;
        uint32_t pid, uid;
        int r;

        *n = 0;
        r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, MANAGER_IFACE, "ListClients", &error, &reply, NULL);
        if (r < 0) {
                r = report_call_error(&error, r, "listing clients");
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(reply, 'a', "(uuso)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(uuso)", &pid, &uid, &comm, &path)) > 0) {
                struct client_row *nv = realloc(v, (*n + 1) * sizeof(*v));
                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                v[*n] = (struct client_row){ .pid = pid, .uid = uid };
                snprintf(v[*n].command, sizeof(v[*n].command), "%s", comm);
                snprintf(v[*n].path, sizeof(v[*n].path), "%s", path);
                (*n)++;
        }
        if (r < 0) {
                free(v);
                fprintf(stderr, "hugepagectl: malformed reply from hugepaged: %s\n", strerror(-r));
                return r;
        }
        *ret = v;
        return 0;
}

static void client_path(uint32_t pid, char *buf, size_t len)
{
        snprintf(buf, len, BUS_PATH "/client/%" PRIu32, pid);
}

static int cmd_clients(sd_bus *bus, unsigned max_rows)
{
        _cleanup_(freep) struct client_row *v = NULL;
        size_t n;
        int r = list_clients(bus, &v, &n);
        if (r < 0)
                return r;

        if (arg_json)
                printf("[");
        else if (n)
                printf("%7s %6s %-16s %6s %12s %6s %8s %9s %10s %8s\n", "PID", "UID", "COMMAND", "RANGES", "FAULTS",
                       "HUGE", "RESERVED", "THRESHOLD", "FAULT P50", "COVERAGE");
        size_t shown = 0;
        for (size_t i = 0; i < n; i++) {
                struct props p;
                char t[32], cov[16] = "-";
                /* A client may leave between the list and this read: skip it quietly. */
                if (get_all(bus, v[i].path, CLIENT_IFACE, &p) < 0)
                        continue;
                if (arg_json) {
                        printf("%s\n  ", shown ? "," : "");
                        json_props(&p, "  ");
                } else if (!max_rows || shown < max_rows) {
                        if (prop_u(&p, "AnonymousBytes"))
                                snprintf(cov, sizeof(cov), "%.1f%%", prop_u(&p, "CoveragePermille") / 10.0);
                        printf("%7" PRIu64 " %6" PRIu64 " %-16.16s %6zu %12" PRIu64 " %6" PRIu64 " %8" PRIu64
                               " %9" PRIu64 " %10s %8s\n",
                               prop_u(&p, "Pid"), prop_u(&p, "Uid"), prop_s(&p, "Command"), p.n_ranges,
                               prop_u(&p, "FaultsServed"), prop_u(&p, "RegionsHuge"), prop_u(&p, "RegionsReserved"),
                               prop_u(&p, "Threshold"), fmt_ns(prop_u(&p, "FaultLatencyP50Ns"), t, sizeof(t)), cov);
                }
                shown++;
                props_done(&p);
        }
        if (arg_json)
                printf("%s]\n", shown ? "\n" : "");
        else if (max_rows && shown > max_rows)
                printf("... and %zu more (hugepagectl clients)\n", shown - max_rows);
        else if (!shown && !max_rows)
                printf("No clients.\n");
        return 0;
}

static int cmd_status(sd_bus *bus)
{
        struct props p;
        char a[32], b[32], c[32];
        int r = get_all(bus, BUS_PATH, MANAGER_IFACE, &p);
        if (r < 0)
                return r;
        if (arg_json) {
                json_props(&p, "");
                printf("\n");
                props_done(&p);
                return 0;
        }
        uint64_t clients = prop_u(&p, "Clients");
        printf("hugepaged %s on %s: %" PRIu64 " client%s, %" PRIu64 " range%s\n", prop_s(&p, "Version"), bus_name(),
               clients, clients == 1 ? "" : "s", prop_u(&p, "Ranges"), prop_u(&p, "Ranges") == 1 ? "" : "s");
        printf("      Config: %s\n", prop_s(&p, "ConfigFile")[0] ? prop_s(&p, "ConfigFile") : "built-in defaults");
        printf("      Policy: threshold %" PRIu64 " pages, fault window %" PRIu64 " pages, dense prediction %s\n",
               prop_u(&p, "DefaultThreshold"), prop_u(&p, "FaultWindow"), prop_u(&p, "DensePrediction") ? "on" : "off");
        printf("      Faults: %" PRIu64 " served (p50 %s, p99 %s), %" PRIu64 " pages populated (%s)\n",
               prop_u(&p, "FaultsServed"), fmt_ns(prop_u(&p, "FaultLatencyP50Ns"), a, sizeof(a)),
               fmt_ns(prop_u(&p, "FaultLatencyP99Ns"), b, sizeof(b)), prop_u(&p, "PagesPopulated"),
               fmt_bytes(prop_u(&p, "PagesPopulated") * 4096, c, sizeof(c)));
        printf("     Regions: %" PRIu64 " huge, %" PRIu64 " reserved with %" PRIu64 " pages unused (%s)\n",
               prop_u(&p, "RegionsHuge"), prop_u(&p, "RegionsReserved"), prop_u(&p, "PagesReservedUnused"),
               fmt_bytes(prop_u(&p, "PagesReservedUnused") * 4096, a, sizeof(a)));
        printf("  Promotions: %" PRIu64 " (%" PRIu64 " failed; p50 %s, p99 %s)\n", prop_u(&p, "Promotions"),
               prop_u(&p, "PromotionsFailed"), fmt_ns(prop_u(&p, "PromotionLatencyP50Ns"), b, sizeof(b)),
               fmt_ns(prop_u(&p, "PromotionLatencyP99Ns"), c, sizeof(c)));
        printf("    Released: %" PRIu64 " reservations\n", prop_u(&p, "ReservationsReleased"));
        printf("     Hugetlb: %" PRIu64 " pages held by clients (%s), %" PRIu64 " faults served, %" PRIu64
               " filled ahead; pool %" PRIu64 " at start + %" PRIu64 " added (budget %" PRIu64 ")\n",
               prop_u(&p, "HugetlbPages"), fmt_bytes(prop_u(&p, "HugetlbPages") << 21, a, sizeof(a)),
               prop_u(&p, "HugetlbFaults"), prop_u(&p, "HugetlbPrefilled"), prop_u(&p, "HugetlbPoolBase"),
               prop_u(&p, "HugetlbPoolAdded"), prop_u(&p, "HugetlbBudget"));
        printf("       Shmem: %s of shared files, %" PRIu64 " reservations (%" PRIu64 " without a huge page), %"
               PRIu64 " subpages mapped, %" PRIu64 " promoted in place, %" PRIu64 " subpages punched, %" PRIu64
               " refused\n", fmt_bytes(prop_u(&p, "ShmemBytes"), a, sizeof(a)), prop_u(&p, "ShmemReservations"),
               prop_u(&p, "ShmemReservationsNoHuge"), prop_u(&p, "ShmemSubpagesMapped"),
               prop_u(&p, "ShmemPromotions"), prop_u(&p, "ShmemSubpagesPunched"), prop_u(&p, "ShmemRefused"));
        print_kernel(&p, "      Kernel: ");
        uint64_t level = prop_u(&p, "PressureLevel");
        printf("    Pressure: %s (%" PRIu64 " rises, %" PRIu64 " PSI triggers, MemAvailable %s), %s given back; "
               "promotions held back: %" PRIu64 " headroom, %" PRIu64 " pressure, %" PRIu64 " bloat; bloat %s\n",
               level < ARRAY_SIZE(pressure_names) ? pressure_names[level] : "?", prop_u(&p, "PressureEvents"),
               prop_u(&p, "PressureTriggers"), fmt_bytes(prop_u(&p, "MemAvailableBytes"), a, sizeof(a)),
               fmt_bytes(prop_u(&p, "PressureReleasedBytes"), b, sizeof(b)), prop_u(&p, "PromotionsSkippedHeadroom"),
               prop_u(&p, "PromotionsSkippedPressure"), prop_u(&p, "PromotionsSkippedBloat"),
               fmt_bytes(prop_u(&p, "BloatBytes"), c, sizeof(c)));
        if (prop_get(&p, "AnonymousBytes")) {
                char cov[128];
                printf("    Coverage: %s\n", fmt_coverage(&p, cov, sizeof(cov)));
        }
        props_done(&p);
        if (clients) {
                printf("\n");
                return cmd_clients(bus, 10);
        }
        return 0;
}

static int parse_pid(const char *s, uint32_t *ret)
{
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v == 0 || v > 0x7fffffff) {
                fprintf(stderr, "hugepagectl: '%s' is not a process id\n", s);
                return -EINVAL;
        }
        *ret = (uint32_t)v;
        return 0;
}

static int cmd_client(sd_bus *bus, const char *pidarg, bool ranges_only)
{
        struct props p;
        char path[128], a[32], b[32], c[32];
        uint32_t pid;
        int r = parse_pid(pidarg, &pid);
        if (r < 0)
                return r;
        client_path(pid, path, sizeof(path));
        r = get_all(bus, path, CLIENT_IFACE, &p);
        if (r < 0)
                return r;
        if (ranges_only) {
                if (arg_json) {
                        printf("[");
                        for (size_t i = 0; i < p.n_ranges; i++)
                                printf("%s\n  {\"start\": %" PRIu64 ", \"end\": %" PRIu64 ", \"length\": %" PRIu64
                                       ", \"threshold\": %" PRIu32 "}",
                                       i ? "," : "", p.ranges[i].start, p.ranges[i].end,
                                       p.ranges[i].end - p.ranges[i].start, p.ranges[i].threshold);
                        printf("%s]\n", p.n_ranges ? "\n" : "");
                } else {
                        printf("%-18s %-18s %10s %9s\n", "START", "END", "SIZE", "THRESHOLD");
                        for (size_t i = 0; i < p.n_ranges; i++) {
                                char t[16];
                                snprintf(t, sizeof(t), "%" PRIu32, p.ranges[i].threshold);
                                printf("%#-18" PRIx64 " %#-18" PRIx64 " %10s %9s\n", p.ranges[i].start,
                                       p.ranges[i].end, fmt_bytes(p.ranges[i].end - p.ranges[i].start, a, sizeof(a)),
                                       p.ranges[i].threshold ? t : "default");
                        }
                }
        } else if (arg_json) {
                json_props(&p, "");
                printf("\n");
        } else {
                char key[96];
                printf("%" PRIu64 " %s (%s), uid %" PRIu64 "\n", prop_u(&p, "Pid"), prop_s(&p, "Command"),
                       prop_s(&p, "Executable"), prop_u(&p, "Uid"));
                printf("  policy: threshold %" PRIu64 " pages, fault window %" PRIu64 " pages, dense prediction %s%s\n",
                       prop_u(&p, "Threshold"), prop_u(&p, "FaultWindow"), prop_u(&p, "DensePrediction") ? "on" : "off",
                       prop_u(&p, "PolicyExplicit") ? " (set explicitly)" : "");
                printf("  ranges: %zu\n", p.n_ranges);
                for (size_t i = 0; i < ARRAY_SIZE(design_counters); i++) {
                        const struct prop *x = prop_get(&p, design_counters[i]);
                        if (!x || x->type != 't')
                                continue;
                        snake(x->name, key, sizeof(key));
                        if (strstr(key, "_ns"))
                                printf("  %-24s %s\n", key, fmt_ns(x->u, b, sizeof(b)));
                        else
                                printf("  %-24s %" PRIu64 "\n", key, x->u);
                }
                print_kernel(&p, "  kernel: ");
                uint64_t limit = prop_u(&p, "CgroupLimitBytes");
                printf("  budget: bloat %s; promotions held back: %" PRIu64 " headroom, %" PRIu64 " pressure, %" PRIu64
                       " bloat; cgroup %s%s%s%s\n", fmt_bytes(prop_u(&p, "BloatBytes"), a, sizeof(a)),
                       prop_u(&p, "PromotionsSkippedHeadroom"), prop_u(&p, "PromotionsSkippedPressure"),
                       prop_u(&p, "PromotionsSkippedBloat"), limit ? "limit " : "without a limit",
                       limit ? fmt_bytes(limit, b, sizeof(b)) : "", limit ? ", room " : "",
                       limit ? fmt_bytes(prop_u(&p, "CgroupRoomBytes"), c, sizeof(c)) : "");
                if (prop_get(&p, "AnonymousBytes")) {
                        char cov[128];
                        printf("  coverage: %s\n", fmt_coverage(&p, cov, sizeof(cov)));
                }
        }
        props_done(&p);
        return 0;
}

static int call_simple(sd_bus *bus, const char *what, const char *method, sd_bus_message *m)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call(bus, m, 0, &error, NULL);
        if (r < 0) {
                if (sd_bus_error_has_names(&error, "org.hugepaged1.Error.AccessDenied",
                                           SD_BUS_ERROR_ACCESS_DENIED, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED))
                        fprintf(stderr, "hugepagectl: %s refused: %s (%s)\n", what,
                                error.message ? error.message : "", error.name);
                else
                        r = report_call_error(&error, r, what);
                sd_bus_error_free(&error);
                return r < 0 ? r : -EIO;
        }
        return 0;
}

static int cmd_reload(sd_bus *bus)
{
        _cleanup_(msg_unrefp) sd_bus_message *m = NULL;
        int r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, BUS_PATH, MANAGER_IFACE, "Reload");
        if (r < 0)
                return r;
        return call_simple(bus, "reload", "Reload", m);
}

static int cmd_set_threshold(sd_bus *bus, const char *pidarg, const char *narg)
{
        _cleanup_(msg_unrefp) sd_bus_message *m = NULL;
        uint32_t pid;
        char *end;
        int r = parse_pid(pidarg, &pid);
        if (r < 0)
                return r;
        unsigned long n = strtoul(narg, &end, 10);
        if (end == narg || *end || narg[0] == '-' || n < 1 || n > 512) {
                fprintf(stderr, "hugepagectl: threshold '%s' is not a number of pages in 1..512\n", narg);
                return -EINVAL;
        }
        r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, BUS_PATH, MANAGER_IFACE, "SetPolicy");
        if (r >= 0)
                r = sd_bus_message_append(m, "ua{sv}", pid, 1, "Threshold", "u", (uint32_t)n);
        if (r < 0)
                return r;
        return call_simple(bus, "set-threshold", "SetPolicy", m);
}

/* ---- metrics ---------------------------------------------------------------------- */

/*
 * `hugepagectl metrics`: every counter as a Prometheus metric. The names
 * follow Prometheus' conventions: hugepaged_ prefix, _total for counters,
 * base units (pages and huge pages in bytes, nanoseconds in seconds).
 * Client metrics are hugepaged_client_* with pid, uid and comm labels.
 */
enum metric_type { METRIC_COUNTER, METRIC_GAUGE };

struct metric {
        const char *property;   /* D-Bus property */
        const char *name;       /* without the hugepaged_ prefix */
        enum metric_type type;
        enum { UNIT_ONE, UNIT_PAGES, UNIT_HUGE_PAGES, UNIT_NS } unit;
        bool client;            /* also a Client property */
        const char *help;
};

static const struct metric metrics[] = {
        { "FaultsServed", "faults_served_total", METRIC_COUNTER, UNIT_ONE, true,
          "Page faults served through userfaultfd." },
        { "PagesPopulated", "populated_bytes_total", METRIC_COUNTER, UNIT_PAGES, true,
          "Memory populated by served faults." },
        { "RegionsReserved", "regions_reserved", METRIC_GAUGE, UNIT_ONE, true,
          "2 MiB regions reserved and not yet huge." },
        { "PagesReservedUnused", "reserved_unused_bytes", METRIC_GAUGE, UNIT_PAGES, true,
          "Memory reserved in those regions but not populated." },
        { "Promotions", "promotions_total", METRIC_COUNTER, UNIT_ONE, true,
          "Regions promoted to a transparent huge page." },
        { "PromotionsFailed", "promotions_failed_total", METRIC_COUNTER, UNIT_ONE, true,
          "Promotions that failed." },
        { "RegionsHuge", "regions_huge", METRIC_GAUGE, UNIT_ONE, true, "Regions that are huge pages now." },
        { "ReservationsReleased", "reservations_released_total", METRIC_COUNTER, UNIT_ONE, true,
          "Reservations released (unmapped or under memory pressure)." },
        { "FaultLatencyP50Ns", "fault_latency_p50_seconds", METRIC_GAUGE, UNIT_NS, true,
          "Median latency of served faults (upper bound of its bucket)." },
        { "FaultLatencyP99Ns", "fault_latency_p99_seconds", METRIC_GAUGE, UNIT_NS, true,
          "99th percentile latency of served faults (upper bound of its bucket)." },
        { "PromotionLatencyP50Ns", "promotion_latency_p50_seconds", METRIC_GAUGE, UNIT_NS, true,
          "Median latency of promotions (upper bound of its bucket)." },
        { "PromotionLatencyP99Ns", "promotion_latency_p99_seconds", METRIC_GAUGE, UNIT_NS, true,
          "99th percentile latency of promotions (upper bound of its bucket)." },
        { "PromotionsSkippedHeadroom", "promotions_skipped_headroom_total", METRIC_COUNTER, UNIT_ONE, true,
          "Promotions held back: no room under the client's memory cgroup limit." },
        { "PromotionsSkippedPressure", "promotions_skipped_pressure_total", METRIC_COUNTER, UNIT_ONE, true,
          "Promotions held back: memory pressure." },
        { "PromotionsSkippedBloat", "promotions_skipped_bloat_total", METRIC_COUNTER, UNIT_ONE, true,
          "Promotions held back: a bloat cap." },
        { "BloatBytes", "bloat_bytes", METRIC_GAUGE, UNIT_ONE, true,
          "Memory that promotions of the regions huge now filled with zeros." },
        { "PressureLevel", "pressure_level", METRIC_GAUGE, UNIT_ONE, false,
          "Memory pressure level (0 none, 1 some, 2 high)." },
        { "PressureEvents", "pressure_events_total", METRIC_COUNTER, UNIT_ONE, false,
          "Rises of the memory pressure level from none." },
        { "PressureTriggers", "pressure_triggers_total", METRIC_COUNTER, UNIT_ONE, false, "PSI triggers seen." },
        { "PressureReleasedBytes", "pressure_released_bytes_total", METRIC_COUNTER, UNIT_ONE, false,
          "Memory given back because of memory pressure." },
        { "PressureFirstReleaseNs", "pressure_first_release_seconds", METRIC_GAUGE, UNIT_NS, false,
          "From the latest rise of the pressure level to its first release." },
        { "MemAvailableBytes", "mem_available_bytes", METRIC_GAUGE, UNIT_ONE, false,
          "MemAvailable of /proc/meminfo when last read." },
        { "ManagedBytes", "managed_bytes", METRIC_GAUGE, UNIT_ONE, true,
          "Memory in use in managed ranges." },
        { "AnonymousBytes", "anonymous_bytes", METRIC_GAUGE, UNIT_ONE, true,
          "Anonymous memory of the clients (smaps_rollup)." },
        { "CoveragePermille", "coverage_permille", METRIC_GAUGE, UNIT_ONE, true,
          "Managed memory per 1000 bytes of anonymous memory." },
        { "Clients", "clients", METRIC_GAUGE, UNIT_ONE, false, "Connected clients." },
        { "Ranges", "ranges", METRIC_GAUGE, UNIT_ONE, false, "Registered address ranges." },
        { "HugetlbPages", "hugetlb_bytes", METRIC_GAUGE, UNIT_HUGE_PAGES, true,
          "hugetlb memory charged to clients now." },
        { "HugetlbFaults", "hugetlb_faults_total", METRIC_COUNTER, UNIT_ONE, true, "hugetlb faults served." },
        { "HugetlbPrefilled", "hugetlb_prefilled_bytes_total", METRIC_COUNTER, UNIT_HUGE_PAGES, true,
          "hugetlb memory filled ahead of a sequential stream of faults." },
        { "HugetlbPoolAdded", "hugetlb_pool_added_bytes", METRIC_GAUGE, UNIT_HUGE_PAGES, false,
          "Memory the daemon added to the hugetlb pool and holds." },
        { "HugetlbPoolBase", "hugetlb_pool_base_bytes", METRIC_GAUGE, UNIT_HUGE_PAGES, false,
          "Size of the hugetlb pool when the daemon started." },
        { "HugetlbBudget", "hugetlb_budget_bytes", METRIC_GAUGE, UNIT_HUGE_PAGES, false,
          "How much the daemon may add to the hugetlb pool (HugetlbMaxSize=)." },
        { "ShmemBytes", "shmem_bytes", METRIC_GAUGE, UNIT_ONE, true,
          "Shared files the daemon holds (per client: those it asked for)." },
        { "ShmemReservations", "shmem_reservations_total", METRIC_COUNTER, UNIT_ONE, true,
          "2 MiB regions reserved in a shared file at their first fault." },
        { "ShmemReservationsNoHuge", "shmem_reservations_nohuge_total", METRIC_COUNTER, UNIT_ONE, true,
          "Shared reservations that got small pages instead of a huge page." },
        { "ShmemSubpagesMapped", "shmem_subpages_mapped_bytes_total", METRIC_COUNTER, UNIT_PAGES, true,
          "Shared memory mapped 4 KiB at a time from its reservation (no copy)." },
        { "ShmemPromotions", "shmem_promotions_total", METRIC_COUNTER, UNIT_ONE, true,
          "Shared regions collapsed in place." },
        { "ShmemSubpagesPunched", "shmem_punched_bytes_total", METRIC_COUNTER, UNIT_PAGES, true,
          "Untouched shared memory given back under pressure." },
        { "ShmemRefused", "shmem_refused_total", METRIC_COUNTER, UNIT_ONE, true,
          "Shared file requests refused for a budget." },
        { "Tracing", "tracing", METRIC_GAUGE, UNIT_ONE, false, "1 if the eBPF tracer runs, else 0." },
        { "KernelFaults", "kernel_faults_total", METRIC_COUNTER, UNIT_ONE, true,
          "Faults that slept in handle_userfault (eBPF)." },
        { "KernelFaultLatencyP50Ns", "kernel_fault_latency_p50_seconds", METRIC_GAUGE, UNIT_NS, true,
          "Median fault latency as the program sees it (eBPF)." },
        { "KernelFaultLatencyP99Ns", "kernel_fault_latency_p99_seconds", METRIC_GAUGE, UNIT_NS, true,
          "99th percentile fault latency as the program sees it (eBPF)." },
        { "CollapsesOk", "collapses_ok_total", METRIC_COUNTER, UNIT_ONE, true,
          "MADV_COLLAPSE calls that made a huge page (eBPF)." },
        { "CollapsesMapped", "collapses_mapped_total", METRIC_COUNTER, UNIT_ONE, true,
          "MADV_COLLAPSE calls that found a huge page mapped already (eBPF)." },
        { "CollapsesFailed", "collapses_failed_total", METRIC_COUNTER, UNIT_ONE, true,
          "MADV_COLLAPSE calls that failed (eBPF)." },
        { "KhugepagedCollapses", "khugepaged_collapses_total", METRIC_COUNTER, UNIT_ONE, true,
          "Regions of managed processes collapsed by khugepaged (eBPF)." },
        { "ThpSplits", "thp_splits_total", METRIC_COUNTER, UNIT_ONE, true,
          "Huge page mappings of managed processes split (eBPF)." },
};

/* The daemon's latency histograms: D-Bus name, metric name, help. */
static const struct {
        const char *property, *name, *help;
} histograms[] = {
        { "FaultLatency", "fault_latency_seconds", "Latency of served faults, fault read to wake-up." },
        { "PromotionLatency", "promotion_latency_seconds", "Latency of promotions to a huge page." },
};

/*
 * The exported buckets: one per doubling from 1 us to 34 s. Each bound is
 * 2^k - 1 ns, the upper end of a bucket of the daemon (8 per doubling, see
 * daemon/ops/stats.h), so every count is exact, not interpolated.
 */
#define METRIC_HIST_FIRST_SHIFT 10
#define METRIC_HIST_LAST_SHIFT 35

static bool arg_openmetrics;

struct histogram_reply {
        char name[32];
        uint64_t count, sum_ns;
        uint64_t (*buckets)[2];         /* upper bound ns, count */
        size_t n;
};

struct client_props {
        struct client_row row;
        struct props p;
        bool ok;
};

/* ns as seconds, exactly. */
static void print_seconds(FILE *f, uint64_t ns)
{
        fprintf(f, "%" PRIu64 ".%09" PRIu64, ns / UINT64_C(1000000000), ns % UINT64_C(1000000000));
}

static void print_value(FILE *f, const struct metric *m, uint64_t v)
{
        switch (m->unit) {
        case UNIT_PAGES:
                fprintf(f, "%" PRIu64, v * 4096);
                break;
        case UNIT_HUGE_PAGES:
                fprintf(f, "%" PRIu64, v * (UINT64_C(2) << 20));
                break;
        case UNIT_NS:
                print_seconds(f, v);
                break;
        default:
                fprintf(f, "%" PRIu64, v);
        }
}

/* A label value: backslash, double quote and newline escaped. */
static void print_label(FILE *f, const char *s)
{
        fputc('"', f);
        for (; *s; s++) {
                if (*s == '\\' || *s == '"')
                        fprintf(f, "\\%c", *s);
                else if (*s == '\n')
                        fputs("\\n", f);
                else
                        fputc(*s, f);
        }
        fputc('"', f);
}

/*
 * HELP and TYPE (and UNIT in OpenMetrics, where a counter's family name has
 * no _total: its sample has).
 */
static void print_header(FILE *f, const char *prefix, const char *name, const char *type, const char *help)
{
        size_t len = strlen(name);
        const char *unit = NULL;

        if (arg_openmetrics && strcmp(type, "counter") == 0 && len > 6 && strcmp(name + len - 6, "_total") == 0)
                len -= 6;
        fprintf(f, "# HELP %s%.*s %s\n", prefix, (int)len, name, help);
        fprintf(f, "# TYPE %s%.*s %s\n", prefix, (int)len, name, type);
        if (len > 8 && strncmp(name + len - 8, "_seconds", 8) == 0)
                unit = "seconds";
        else if (len > 6 && strncmp(name + len - 6, "_bytes", 6) == 0)
                unit = "bytes";
        if (arg_openmetrics && unit)
                fprintf(f, "# UNIT %s%.*s %s\n", prefix, (int)len, name, unit);
}

static void print_histogram(FILE *f, const char *name, const char *help, const struct histogram_reply *h)
{
        print_header(f, "hugepaged_", name, "histogram", help);
        for (unsigned k = METRIC_HIST_FIRST_SHIFT; k <= METRIC_HIST_LAST_SHIFT; k++) {
                uint64_t le = (1ull << k) - 1, n = 0;
                for (size_t i = 0; i < h->n; i++)
                        if (h->buckets[i][0] <= le)
                                n += h->buckets[i][1];
                fprintf(f, "hugepaged_%s_bucket{le=\"", name);
                print_seconds(f, le);
                fprintf(f, "\"} %" PRIu64 "\n", n);
        }
        fprintf(f, "hugepaged_%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
        fprintf(f, "hugepaged_%s_sum ", name);
        print_seconds(f, h->sum_ns);
        fprintf(f, "\nhugepaged_%s_count %" PRIu64 "\n", name, h->count);
}

static int get_histograms(sd_bus *bus, struct histogram_reply *v, size_t max, size_t *ret_n)
{
        _cleanup_(msg_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *name;
        uint64_t count, sum;
        size_t n = 0;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, MANAGER_IFACE, "GetLatencyHistograms", &error, &reply,
                               NULL);
        if (r < 0) {
                r = report_call_error(&error, r, "reading the latency histograms");
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(reply, 'a', "(stta(tt))");
        while (r >= 0 && n < max && (r = sd_bus_message_enter_container(reply, 'r', "stta(tt)")) > 0) {
                struct histogram_reply *h = &v[n];
                uint64_t le, c;
                r = sd_bus_message_read(reply, "stt", &name, &count, &sum);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "(tt)");
                if (r < 0)
                        break;
                *h = (struct histogram_reply){ .count = count, .sum_ns = sum };
                snprintf(h->name, sizeof(h->name), "%s", name);
                n++;
                while (r >= 0 && (r = sd_bus_message_read(reply, "(tt)", &le, &c)) > 0) {
                        uint64_t (*nb)[2] = realloc(h->buckets, (h->n + 1) * sizeof(*nb));
                        if (!nb) {
                                r = -ENOMEM;
                                break;
                        }
                        h->buckets = nb;
                        h->buckets[h->n][0] = le;
                        h->buckets[h->n][1] = c;
                        h->n++;
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        *ret_n = n;
        if (r < 0) {
                fprintf(stderr, "hugepagectl: malformed reply from hugepaged: %s\n", strerror(-r));
                return r;
        }
        return 0;
}

static int write_metrics(FILE *f, const struct props *mp, const struct client_props *cv, size_t nc,
                         const struct histogram_reply *hv, size_t nh)
{
        for (size_t i = 0; i < ARRAY_SIZE(metrics); i++) {
                const struct metric *m = &metrics[i];
                if (!prop_get(mp, m->property))
                        continue;       /* a daemon without it */
                print_header(f, "hugepaged_", m->name, m->type == METRIC_COUNTER ? "counter" : "gauge", m->help);
                fprintf(f, "hugepaged_%s ", m->name);
                print_value(f, m, prop_u(mp, m->property));
                fputc('\n', f);
        }
        for (size_t i = 0; i < ARRAY_SIZE(histograms); i++)
                for (size_t j = 0; j < nh; j++)
                        if (strcmp(hv[j].name, histograms[i].property) == 0)
                                print_histogram(f, histograms[i].name, histograms[i].help, &hv[j]);
        for (size_t i = 0; i < ARRAY_SIZE(metrics); i++) {
                const struct metric *m = &metrics[i];
                bool header = false;
                if (!m->client)
                        continue;
                for (size_t j = 0; j < nc; j++) {
                        if (!cv[j].ok || !prop_get(&cv[j].p, m->property))
                                continue;
                        if (!header) {
                                char help[256];
                                snprintf(help, sizeof(help), "Per client: %s", m->help);
                                print_header(f, "hugepaged_client_", m->name,
                                             m->type == METRIC_COUNTER ? "counter" : "gauge", help);
                                header = true;
                        }
                        fprintf(f, "hugepaged_client_%s{pid=\"%" PRIu32 "\",uid=\"%" PRIu32 "\",comm=", m->name,
                                cv[j].row.pid, cv[j].row.uid);
                        print_label(f, cv[j].row.command);
                        fputs("} ", f);
                        print_value(f, m, prop_u(&cv[j].p, m->property));
                        fputc('\n', f);
                }
        }
        if (arg_openmetrics)
                fputs("# EOF\n", f);
        return ferror(f) ? -EIO : 0;
}

/* Write to a temporary file next to path, then rename it over path: a
 * reader (node_exporter's textfile collector) sees the old file or the new
 * one, never half of one. The temporary name does not end in .prom. */
static int write_atomically(const char *path, const struct props *mp, const struct client_props *cv,
                            size_t nc, const struct histogram_reply *hv, size_t nh)
{
        size_t len = strlen(path);
        _cleanup_(freep) char *tmp = malloc(len + 8);
        int fd, r;

        if (!tmp)
                return -ENOMEM;
        memcpy(tmp, path, len);
        memcpy(tmp + len, ".XXXXXX", 8);
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                fprintf(stderr, "hugepagectl: cannot create a temporary file next to %s: %s\n", path, strerror(errno));
                return r;
        }
        FILE *f = fdopen(fd, "w");
        if (!f) {
                r = -errno;
                close(fd);
                unlink(tmp);
                return r;
        }
        r = fchmod(fd, 0644) < 0 ? -errno : 0;
        if (r >= 0)
                r = write_metrics(f, mp, cv, nc, hv, nh);
        if (r >= 0 && fflush(f) != 0)
                r = -errno;
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (fclose(f) != 0 && r >= 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                fprintf(stderr, "hugepagectl: cannot write %s: %s\n", path, strerror(-r));
                unlink(tmp);
        }
        return r;
}

static int cmd_metrics(sd_bus *bus, const char *output)
{
        _cleanup_(freep) struct client_row *rows = NULL;
        _cleanup_(freep) struct client_props *cv = NULL;
        struct histogram_reply hv[8] = {};
        struct props mp;
        size_t nc = 0, nh = 0;
        int r;

        r = get_all(bus, BUS_PATH, MANAGER_IFACE, &mp);
        if (r < 0)
                return r;
        r = get_histograms(bus, hv, ARRAY_SIZE(hv), &nh);
        if (r >= 0)
                r = list_clients(bus, &rows, &nc);
        if (r >= 0 && nc && !(cv = calloc(nc, sizeof(*cv))))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < nc; i++) {
                cv[i].row = rows[i];
                /* A client that left since the list is left out, not an error. */
                int k = get_all_flags(bus, rows[i].path, CLIENT_IFACE, &cv[i].p, true);
                cv[i].ok = k >= 0;
                if (k < 0 && k != -ENOENT)
                        r = k;
        }
        if (r >= 0)
                r = output ? write_atomically(output, &mp, cv, nc, hv, nh) : write_metrics(stdout, &mp, cv, nc, hv, nh);
        for (size_t i = 0; i < nc && cv; i++)
                if (cv[i].ok)
                        props_done(&cv[i].p);
        for (size_t i = 0; i < nh; i++)
                free(hv[i].buckets);
        props_done(&mp);
        return r;
}

/* ---- main ----------------------------------------------------------------------- */

static void help(void)
{
        printf("Usage: hugepagectl [OPTIONS] COMMAND\n"
               "Show and steer a running hugepaged over D-Bus.\n\n"
               "Commands:\n"
               "  status                 counters, policy and the busiest clients\n"
               "  clients                one line per connected client\n"
               "  client PID             everything about one client\n"
               "  ranges PID             the address ranges a client registered\n"
               "  stats                  the global counters\n"
               "  reload                 reload hugepaged.conf (root)\n"
               "  set-threshold PID N    promotion threshold of a client, pages 1..512 (root)\n"
               "  metrics                every counter for Prometheus (text exposition format)\n\n"
               "Options:\n"
               "      --json             machine-readable output (counter names as in hugepaged(8))\n"
               "      --system           talk to hugepaged on the system bus (default)\n"
               "      --user             talk to hugepaged on the user's session bus\n"
               "      --address ADDRESS  talk to hugepaged on the bus at ADDRESS\n"
               "  -o, --output FILE      metrics: write FILE atomically instead of standard output\n"
               "      --openmetrics      metrics: OpenMetrics 1.0 instead of the Prometheus text format\n"
               "  -h, --help             show this help\n"
               "      --version          show the version\n");
}

int main(int argc, char **argv)
{
        enum { ARG_JSON = 0x100, ARG_SYSTEM, ARG_USER, ARG_ADDRESS, ARG_VERSION, ARG_OPENMETRICS };
        static const struct option opts[] = {
                { "json", no_argument, NULL, ARG_JSON },
                { "system", no_argument, NULL, ARG_SYSTEM },
                { "user", no_argument, NULL, ARG_USER },
                { "address", required_argument, NULL, ARG_ADDRESS },
                { "output", required_argument, NULL, 'o' },
                { "openmetrics", no_argument, NULL, ARG_OPENMETRICS },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        _cleanup_(bus_unrefp) sd_bus *bus = NULL;
        const char *output = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) >= 0) {
                switch (c) {
                case ARG_JSON: arg_json = true; break;
                case ARG_SYSTEM: arg_bus = BUS_SYSTEM; break;
                case ARG_USER: arg_bus = BUS_USER; break;
                case ARG_ADDRESS: arg_bus = BUS_ADDRESS; arg_address = optarg; break;
                case 'o': output = optarg; break;
                case ARG_OPENMETRICS: arg_openmetrics = true; break;
                case 'h': help(); return 0;
                case ARG_VERSION: printf("hugepagectl %s\n", HP_VERSION_STRING); return 0;
                default:
                        fprintf(stderr, "Try 'hugepagectl --help'.\n");
                        return 2;
                }
        }
        const char *verb = optind < argc ? argv[optind] : "status";
        int nargs = optind < argc ? argc - optind - 1 : 0;
        char **args = argv + optind + 1;
        static const struct { const char *verb; int nargs; } verbs[] = {
                { "status", 0 }, { "clients", 0 }, { "client", 1 }, { "ranges", 1 }, { "stats", 0 },
                { "reload", 0 }, { "set-threshold", 2 }, { "metrics", 0 },
        };
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
                if (strcmp(verb, verbs[i].verb) == 0) {
                        known = true;
                        if (nargs != verbs[i].nargs) {
                                fprintf(stderr, "hugepagectl: %s takes %d argument%s, got %d\n", verb, verbs[i].nargs,
                                        verbs[i].nargs == 1 ? "" : "s", nargs);
                                return 2;
                        }
                }
        if (!known) {
                fprintf(stderr, "hugepagectl: unknown command '%s' (see hugepagectl --help)\n", verb);
                return 2;
        }
        if ((output || arg_openmetrics) && strcmp(verb, "metrics") != 0) {
                fprintf(stderr, "hugepagectl: --output and --openmetrics are options of 'metrics'\n");
                return 2;
        }

        switch (arg_bus) {
        case BUS_SYSTEM:
                r = sd_bus_open_system(&bus);
                break;
        case BUS_USER:
                r = sd_bus_open_user(&bus);
                break;
        default:
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, arg_address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, 1);
                if (r >= 0)
                        r = sd_bus_start(bus);
        }
        if (r < 0) {
                fprintf(stderr, "hugepagectl: cannot connect to %s: %s\n", bus_name(), strerror(-r));
                return 1;
        }

        if (strcmp(verb, "status") == 0)
                r = cmd_status(bus);
        else if (strcmp(verb, "clients") == 0)
                r = cmd_clients(bus, 0);
        else if (strcmp(verb, "client") == 0)
                r = cmd_client(bus, args[0], false);
        else if (strcmp(verb, "ranges") == 0)
                r = cmd_client(bus, args[0], true);
        else if (strcmp(verb, "stats") == 0)
                r = cmd_stats(bus);
        else if (strcmp(verb, "reload") == 0)
                r = cmd_reload(bus);
        else if (strcmp(verb, "metrics") == 0)
                r = cmd_metrics(bus, output);
        else
                r = cmd_set_threshold(bus, args[0], args[1]);
        return r < 0 ? 1 : 0;
}
