/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * config.c: hugepaged.conf(5), parsed with inih into a struct config through
 * one table of {section, key, parser, destination, limits}. Every value is
 * range-checked with its unit; a problem is reported as "FILE:LINE: KEY:
 * why"; unknown sections and keys are warned about and ignored.
 *
 * Pure: no logging (problems go to the caller's callback), no name lookups,
 * nothing applied to the running daemon (that is reload.c).
 */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>

#include "allocator.h"
#include "config.h"
#include "hugepaged-protocol.h"
#include "hugepaged.h"
#include "log.h"
#include "util.h"

#define PROGRAM_PREFIX "Program:"
#define WHY_MAX 200

/* ---- string lists ---------------------------------------------------------- */

static char **strv_free(char **v)
{
        if (v)
                for (char **p = v; *p; p++)
                        free(*p);
        free(v);
        return NULL;
}

static int strv_copy(char **src, char ***ret)
{
        size_t n = 0;
        while (src && src[n])
                n++;
        char **v = calloc(n + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(v[i] = strdup(src[i]))) {
                        strv_free(v);
                        return -ENOMEM;
                }
        *ret = v;
        return 0;
}

/* ---- value parsers ------------------------------------------------------------ */

int config_parse_size(const char *s, uint64_t *ret)
{
        char *end;

        while (isspace((unsigned char)*s))
                s++;
        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno)
                return -ERANGE;
        unsigned shift = 0;
        switch (toupper((unsigned char)*end)) {
        case 'K': shift = 10; end++; break;
        case 'M': shift = 20; end++; break;
        case 'G': shift = 30; end++; break;
        case 'T': shift = 40; end++; break;
        }
        if (shift && *end == 'i')
                end++;
        if (*end == 'B')
                end++;
        if (*end)
                return -EINVAL;
        if (shift && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = (uint64_t)v << shift;
        return 0;
}

int config_parse_bool(const char *s, bool *ret)
{
        static const char *const yes[] = { "1", "yes", "y", "true", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "off" };

        for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
        for (size_t i = 0; i < ARRAY_SIZE(no); i++)
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        return -EINVAL;
}

static int parse_percent(const char *s, double *ret)
{
        char *end;
        size_t n = strlen(s);

        if (n < 2 || s[n - 1] != '%' || !isdigit((unsigned char)s[0]))
                return -EINVAL;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end != s + n - 1 || !isfinite(v))
                return -EINVAL;
        *ret = v;
        return 0;
}

int config_parse_pages(const char *s, uint32_t *ret)
{
        double pct;
        uint64_t v;

        if (parse_percent(s, &pct) == 0) {
                if (pct <= 0 || pct > 100)
                        return -ERANGE;
                double pages = ceil(pct * HP_REGION_PAGES / 100.0 - 1e-9);
                *ret = pages < 1 ? 1 : (uint32_t)pages;
                return 0;
        }
        if (config_parse_size(s, &v) < 0)
                return -EINVAL;
        /* A bare number counts pages; a size with a unit counts bytes. */
        bool bytes = strpbrk(s, "KkMmGgTtBb") != NULL;
        if (bytes) {
                if (v % HP_PAGE_SIZE)
                        return -EINVAL;
                v /= HP_PAGE_SIZE;
        }
        if (v < 1 || v > HP_REGION_PAGES)
                return -ERANGE;
        *ret = (uint32_t)v;
        return 0;
}

/* Each parser writes *dst or explains in why. */
struct config_item;
typedef int (*config_parser)(const struct config_item *it, const char *v, void *dst, char *why);

struct config_item {
        const char *section;
        const char *key;
        config_parser parse;
        size_t offset;
        uint64_t lo, hi;        /* for numbers */
};

static int why_set(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int why_set(char *why, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, WHY_MAX, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int parse_uint(const struct config_item *it, const char *v, void *dst, char *why)
{
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (!isdigit((unsigned char)v[0]) || *end || errno)
                return why_set(why, "'%s' is not a whole number", v);
        if (n < it->lo || n > it->hi)
                return why_set(why, "%s is outside %" PRIu64 "..%" PRIu64, v, it->lo, it->hi);
        *(unsigned *)dst = (unsigned)n;
        return 0;
}

static int parse_nice(const struct config_item *it, const char *v, void *dst, char *why)
{
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (end == v || *end || errno)
                return why_set(why, "'%s' is not a whole number", v);
        if (n < -20 || n > 19)
                return why_set(why, "%s is outside -20..19", v);
        *(int *)dst = (int)n;
        return 0;
}

static int parse_pages(const struct config_item *it, const char *v, void *dst, char *why)
{
        int r = config_parse_pages(v, dst);
        if (r == -ERANGE)
                return why_set(why, "'%s' is outside 1..512 pages", v);
        if (r < 0)
                return why_set(why, "'%s' is not a number of pages (64), a size (256K) or a share of a "
                               "2 MiB region (12.5%%)", v);
        return 0;
}

static int parse_bytes(const struct config_item *it, const char *v, void *dst, char *why)
{
        uint64_t n;
        if (config_parse_size(v, &n) < 0)
                return why_set(why, "'%s' is not a size such as 4K, 2M or 1G", v);
        if (n < it->lo || n > it->hi)
                return why_set(why, "%s is outside %" PRIu64 "K..%" PRIu64 "G", v, it->lo >> 10, it->hi >> 30);
        if (n % HP_PAGE_SIZE)
                return why_set(why, "%s is not a multiple of 4K", v);
        *(uint64_t *)dst = n;
        return 0;
}

static int parse_size_or_percent(const struct config_item *it, const char *v, void *dst, char *why)
{
        struct config_size *s = dst;
        double pct;
        uint64_t n;

        if (!v[0]) {    /* empty: no limit */
                *s = (struct config_size){ 0 };
                return 0;
        }

        if (parse_percent(v, &pct) == 0) {
                if (pct < 1 || pct > 100 || pct != floor(pct))
                        return why_set(why, "%s is not a whole percentage in 1%%..100%% of memory", v);
                *s = (struct config_size){ .percent = (unsigned)pct };
                return 0;
        }
        if (config_parse_size(v, &n) < 0)
                return why_set(why, "'%s' is neither a size (512M, 4G) nor a share of memory (25%%)", v);
        if (n % HP_REGION_SIZE)
                return why_set(why, "%s is not a multiple of 2M", v);
        *s = (struct config_size){ .bytes = n };
        return 0;
}

static int parse_cap(const struct config_item *it, const char *v, void *dst, char *why)
{
        struct config_cap *c = dst;
        double pct;
        uint64_t n;

        if (!v[0]) {    /* empty: no cap */
                *c = (struct config_cap){ 0 };
                return 0;
        }
        if (parse_percent(v, &pct) == 0) {
                if (pct < 0 || pct > 1000 || pct != floor(pct))
                        return why_set(why, "%s is not a whole percentage in 0%%..1000%%", v);
                *c = (struct config_cap){ .set = true, .percent = (unsigned)pct, .is_percent = true };
                return 0;
        }
        if (config_parse_size(v, &n) < 0)
                return why_set(why, "'%s' is neither a size (512M, 0) nor a percentage (50%%)", v);
        *c = (struct config_cap){ .set = true, .bytes = n };
        return 0;
}

static int parse_bool(const struct config_item *it, const char *v, void *dst, char *why)
{
        if (config_parse_bool(v, dst) < 0)
                return why_set(why, "'%s' is not a boolean (yes/no, true/false, on/off, 1/0)", v);
        return 0;
}

static int parse_tristate(const struct config_item *it, const char *v, void *dst, char *why)
{
        bool b;
        if (config_parse_bool(v, &b) < 0)
                return why_set(why, "'%s' is not a boolean (yes/no, true/false, on/off, 1/0)", v);
        *(int *)dst = b;
        return 0;
}

static int parse_socket(const struct config_item *it, const char *v, void *dst, char *why)
{
        char **p = dst, *s;
        if (v[0] != '/')
                return why_set(why, "'%s' is not an absolute path", v);
        if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                return why_set(why, "the path is longer than %zu bytes",
                               sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        if (!(s = strdup(v)))
                return -ENOMEM;
        free(*p);
        *p = s;
        return 0;
}

static int parse_log_level(const struct config_item *it, const char *v, void *dst, char *why)
{
        int l = log_parse_level(v);
        if (l < 0)
                return why_set(why, "'%s' is not one of error, warning, notice, info, debug", v);
        *(int *)dst = l;
        return 0;
}

static int parse_allocator(const struct config_item *it, const char *v, void *dst, char *why)
{
        int a = hp_allocator_from_name(v);
        if (a < 0)
                return why_set(why, "'%s' is not one of " HP_ALLOCATOR_LIST, v);
        *(int *)dst = a;
        return 0;
}

/* Names are checked for shape only; reload.c resolves them. */
static bool valid_account_name(const char *s, size_t n)
{
        if (n == 0 || n > 32 || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)s[i]) && !strchr("_-.$", s[i]))
                        return false;
        return true;
}

/* Space- or comma-separated names; an empty value empties the list. */
static int parse_names(const struct config_item *it, const char *v, void *dst, char *why)
{
        char ***p = dst;
        char **list = calloc(strlen(v) / 2 + 2, sizeof(char *));
        size_t n = 0;

        if (!list)
                return -ENOMEM;
        for (const char *s = v; *s;) {
                s += strspn(s, " \t,");
                size_t len = strcspn(s, " \t,");
                if (len == 0)
                        break;
                if (!valid_account_name(s, len)) {
                        strv_free(list);
                        return why_set(why, "'%.*s' is not a user or group name", (int)len, s);
                }
                if (!(list[n++] = strndup(s, len))) {
                        strv_free(list);
                        return -ENOMEM;
                }
                s += len;
        }
        strv_free(*p);
        *p = list;
        return 0;
}

#define ITEM(s, k, p, f, ...) { .section = s, .key = k, .parse = p, .offset = f, __VA_ARGS__ }
#define C(f) offsetof(struct config, f)
static const struct config_item items[] = {
        ITEM("Daemon", "Socket", parse_socket, C(socket_path)),
        ITEM("Daemon", "Workers", parse_uint, C(workers), .lo = 1, .hi = 64),
        ITEM("Daemon", "FaultThreads", parse_uint, C(fault_threads), .lo = 0, .hi = 256),
        ITEM("Daemon", "Nice", parse_nice, C(nice)),
        ITEM("Daemon", "LogLevel", parse_log_level, C(log_level)),
        ITEM("Daemon", "AllowedUsers", parse_names, C(allowed_users)),
        ITEM("Daemon", "AllowedGroups", parse_names, C(allowed_groups)),
        ITEM("Daemon", "AdminUsers", parse_names, C(admin_users)),
        ITEM("Daemon", "AdminGroups", parse_names, C(admin_groups)),
        ITEM("Policy", "Threshold", parse_pages, C(threshold)),
        ITEM("Policy", "MinSize", parse_bytes, C(min_size), .lo = 0, .hi = 1ull << 40),
        ITEM("Policy", "DensePrediction", parse_bool, C(dense_predict)),
        ITEM("Policy", "FaultWindow", parse_pages, C(max_window)),
        ITEM("Pool", "HugetlbMaxSize", parse_size_or_percent, C(hugetlb_max)),
        ITEM("Pool", "ShmemMaxSize", parse_size_or_percent, C(shmem_max)),
        ITEM("Budgets", "MaxClients", parse_uint, C(max_clients), .lo = 1, .hi = 1u << 20),
        ITEM("Budgets", "MaxRangesPerClient", parse_uint, C(max_ranges), .lo = 1, .hi = 1u << 24),
        ITEM("Budgets", "MaxConnectionsPerUser", parse_uint, C(max_connections_per_user), .lo = 1, .hi = 1u << 20),
        ITEM("Budgets", "HandshakeTimeoutSec", parse_uint, C(handshake_timeout_sec), .lo = 1, .hi = 3600),
        ITEM("Budgets", "MaxRequestsPerSecond", parse_uint, C(max_request_rate), .lo = 0, .hi = 1000000),
        ITEM("Budgets", "MaxHugePerClient", parse_size_or_percent, C(huge_per_client)),
        ITEM("Budgets", "MaxShmemPerClient", parse_size_or_percent, C(shmem_per_client)),
        ITEM("Budgets", "HeadroomMargin", parse_size_or_percent, C(headroom_margin)),
        ITEM("Budgets", "MaxBloat", parse_cap, C(max_bloat)),
        ITEM("Budgets", "MaxBloatPerClient", parse_cap, C(max_bloat_per_client)),
        ITEM("Pressure", "LowMemAvailable", parse_size_or_percent, C(low_mem_available)),
};
#undef C

#define P(f) offsetof(struct config_program, f)
static const struct config_item program_items[] = {
        ITEM(PROGRAM_PREFIX, "Threshold", parse_pages, P(threshold)),
        ITEM(PROGRAM_PREFIX, "DensePrediction", parse_tristate, P(dense_predict)),
        ITEM(PROGRAM_PREFIX, "FaultWindow", parse_pages, P(max_window)),
        ITEM(PROGRAM_PREFIX, "Allocator", parse_allocator, P(allocator)),
};
#undef P
#undef ITEM

/* ---- the struct ---------------------------------------------------------------- */

int config_init(struct config *c)
{
        *c = (struct config){
                .workers = 1,
                .nice = -10,
                .log_level = LOG_INFO,
                .threshold = 64,
                .min_size = 0,
                .dense_predict = true,
                .max_window = 64,
                .hugetlb_max = { .percent = 25 },
                .shmem_max = { .percent = 25 },
                .low_mem_available = { .percent = 10 },
                .max_clients = 4096,
                .max_ranges = 65536,
                .max_connections_per_user = 1024,
                .handshake_timeout_sec = 10,
                .max_request_rate = 2000,
        };
        c->socket_path = strdup(HUGEPAGED_DEFAULT_SOCKET);
        c->allowed_groups = calloc(2, sizeof(char *));
        if (c->allowed_groups)
                c->allowed_groups[0] = strdup("hugepaged");
        c->allowed_users = calloc(1, sizeof(char *));
        c->admin_users = calloc(1, sizeof(char *));
        c->admin_groups = calloc(1, sizeof(char *));
        if (!c->socket_path || !c->allowed_groups || !c->allowed_groups[0] || !c->allowed_users ||
            !c->admin_users || !c->admin_groups) {
                config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void config_done(struct config *c)
{
        free(c->socket_path);
        strv_free(c->allowed_users);
        strv_free(c->allowed_groups);
        strv_free(c->admin_users);
        strv_free(c->admin_groups);
        for (size_t i = 0; i < c->n_programs; i++)
                free(c->programs[i].name);
        free(c->programs);
        *c = (struct config){ 0 };
}

int config_copy(struct config *dst, const struct config *src)
{
        *dst = *src;
        dst->socket_path = NULL;
        dst->allowed_users = dst->allowed_groups = dst->admin_users = dst->admin_groups = NULL;
        dst->programs = NULL;
        dst->n_programs = 0;
        if (!(dst->socket_path = strdup(src->socket_path)) ||
            strv_copy(src->allowed_users, &dst->allowed_users) < 0 ||
            strv_copy(src->allowed_groups, &dst->allowed_groups) < 0 ||
            strv_copy(src->admin_users, &dst->admin_users) < 0 ||
            strv_copy(src->admin_groups, &dst->admin_groups) < 0)
                goto fail;
        if (src->n_programs) {
                dst->programs = calloc(src->n_programs, sizeof(*dst->programs));
                if (!dst->programs)
                        goto fail;
                for (size_t i = 0; i < src->n_programs; i++) {
                        dst->programs[i] = src->programs[i];
                        dst->programs[i].name = strdup(src->programs[i].name);
                        dst->n_programs++;
                        if (!dst->programs[i].name)
                                goto fail;
                }
        }
        return 0;
fail:
        config_done(dst);
        return -ENOMEM;
}

int config_apply_overrides(struct config *dst, const struct config *src, unsigned mask)
{
        if (mask & CONFIG_SET_SOCKET) {
                char *s = strdup(src->socket_path);
                if (!s)
                        return -ENOMEM;
                free(dst->socket_path);
                dst->socket_path = s;
        }
        if (mask & CONFIG_SET_ALLOWED_GROUPS) {
                char **v;
                if (strv_copy(src->allowed_groups, &v) < 0)
                        return -ENOMEM;
                strv_free(dst->allowed_groups);
                dst->allowed_groups = v;
        }
        if (mask & CONFIG_SET_WORKERS)
                dst->workers = src->workers;
        if (mask & CONFIG_SET_FAULT_THREADS)
                dst->fault_threads = src->fault_threads;
        if (mask & CONFIG_SET_LOG_LEVEL)
                dst->log_level = src->log_level;
        if (mask & CONFIG_SET_THRESHOLD)
                dst->threshold = src->threshold;
        if (mask & CONFIG_SET_DENSE_PREDICT)
                dst->dense_predict = src->dense_predict;
        if (mask & CONFIG_SET_MAX_WINDOW)
                dst->max_window = src->max_window;
        if (mask & CONFIG_SET_MAX_CLIENTS)
                dst->max_clients = src->max_clients;
        if (mask & CONFIG_SET_MAX_RANGES)
                dst->max_ranges = src->max_ranges;
        return 0;
}

const struct config_program *config_find_program(const struct config *c, const char *name)
{
        if (!name || !name[0])
                return NULL;
        for (size_t i = 0; i < c->n_programs; i++)
                if (strcmp(c->programs[i].name, name) == 0)
                        return &c->programs[i];
        return NULL;
}

static struct config_program *program_get(struct config *c, const char *name)
{
        struct config_program *p = (struct config_program *)config_find_program(c, name);
        if (p)
                return p;
        p = realloc(c->programs, (c->n_programs + 1) * sizeof(*p));
        if (!p)
                return NULL;
        c->programs = p;
        p = &c->programs[c->n_programs];
        *p = (struct config_program){ .dense_predict = -1, .allocator = -1, .name = strdup(name) };
        if (!p->name)
                return NULL;
        c->n_programs++;
        return p;
}

/* ---- the file -------------------------------------------------------------------- */

struct parse_state {
        struct config *c;
        const char *path;
        FILE *f;
        unsigned line;
        char *last_section;     /* to warn once per unknown section */
        config_report_fn report;
        void *userdata;
        int errors;
        int oom;
};

static void report(struct parse_state *s, int level, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void report(struct parse_state *s, int level, const char *key, const char *fmt, ...)
{
        char msg[512], what[WHY_MAX + 64];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        if (key)
                snprintf(msg, sizeof(msg), "%s:%u: %s: %s", s->path, s->line, key, what);
        else
                snprintf(msg, sizeof(msg), "%s:%u: %s", s->path, s->line, what);
        if (level <= LOG_ERR)
                s->errors++;
        if (s->report)
                s->report(s->userdata, level, msg);
}

/* inih's reader: one line per call, counted, so every report names its line. */
static char *read_line(char *buf, int size, void *stream)
{
        struct parse_state *s = stream;
        if (!fgets(buf, size, s->f))
                return NULL;
        s->line++;
        size_t n = strlen(buf);
        if (n > 0 && buf[n - 1] != '\n' && !feof(s->f)) {
                /* Longer than inih's buffer: keep the head, skip the rest of the line. */
                int ch;
                while ((ch = fgetc(s->f)) != EOF && ch != '\n')
                        ;
                report(s, LOG_WARNING, NULL, "line longer than %d bytes, truncated", size - 1);
        }
        return buf;
}

static int on_value(void *user, const char *section, const char *key, const char *value)
{
        struct parse_state *s = user;
        const struct config_item *table = items;
        size_t n = ARRAY_SIZE(items);
        char why[WHY_MAX] = "";
        void *base = s->c;

        if (!key) {     /* a section header alone (INI_CALL_HANDLER_ON_NEW_SECTION builds) */
                return 1;
        }
        if (strncasecmp(section, PROGRAM_PREFIX, strlen(PROGRAM_PREFIX)) == 0) {
                const char *name = section + strlen(PROGRAM_PREFIX);
                if (!name[0] || strchr(name, '/') || strlen(name) > 255) {
                        report(s, LOG_ERR, key, "[%s]: expected [Program:NAME] with the executable's file name",
                               section);
                        return 1;
                }
                struct config_program *p = program_get(s->c, name);
                if (!p) {
                        s->oom = 1;
                        return 0;
                }
                table = program_items;
                n = ARRAY_SIZE(program_items);
                base = p;
        } else {
                bool known = false;
                for (size_t i = 0; i < n && !known; i++)
                        known = strcasecmp(section, table[i].section) == 0;
                if (!known) {
                        if (!s->last_section || strcmp(s->last_section, section) != 0) {
                                report(s, LOG_WARNING, NULL, "unknown section [%s], ignored", section);
                                free(s->last_section);
                                s->last_section = strdup(section);
                        }
                        return 1;
                }
        }
        for (size_t i = 0; i < n; i++) {
                const struct config_item *it = &table[i];
                if ((table == items && strcasecmp(section, it->section) != 0) || strcasecmp(key, it->key) != 0)
                        continue;
                int r = it->parse(it, value, (char *)base + it->offset, why);
                if (r == -ENOMEM) {
                        s->oom = 1;
                        return 0;
                }
                if (r < 0)
                        report(s, LOG_ERR, it->key, "%s", why);
                return 1;
        }
        report(s, LOG_WARNING, key, "unknown key in [%s], ignored", section);
        return 1;
}

int config_load(struct config *c, const char *path, config_report_fn reportfn, void *userdata)
{
        struct parse_state s = { .c = c, .path = path, .report = reportfn, .userdata = userdata };
        int r;

        s.f = fopen(path, "re");
        if (!s.f)
                return -errno;
        r = ini_parse_stream(read_line, &s, on_value, &s);
        fclose(s.f);
        free(s.last_section);
        if (s.oom || r == -2)
                return -ENOMEM;
        if (r > 0) {
                /* inih's own syntax error (no '=', unclosed '['): on_value never
                 * fails, so this is the line of the first one. */
                s.line = (unsigned)r;
                report(&s, LOG_ERR, NULL, "syntax error: expected [Section] or Key=Value");
        }
        return s.errors ? -EINVAL : 0;
}
