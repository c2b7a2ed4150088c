/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * config.h: the daemon's settings (hugepaged.conf(5)) and their parser.
 *
 * Pure: parsing reads the one file it is given and reports through a
 * callback; it never logs, resolves user names or touches the running
 * daemon (reload.c applies a parsed config). Unit-tested with fabricated
 * files (tests/unit/test-config.c).
 */
#ifndef HP_CONFIG_H
#define HP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* meson sets it from sysconfdir: /etc/hugepaged/hugepaged.conf with prefix /usr */
#ifndef HUGEPAGED_DEFAULT_CONFIG
#define HUGEPAGED_DEFAULT_CONFIG "/etc/hugepaged/hugepaged.conf"
#endif

/* [Program:NAME]: policy for clients whose executable is NAME. 0/-1 = not set. */
struct config_program {
        char *name;
        uint32_t threshold;
        uint32_t max_window;
        int dense_predict;
        int allocator;          /* enum hp_allocator (allocator.h), -1 = not set; read by hugepaged-run */
};

/* A size given either in bytes or as a share of physical memory. */
struct config_size {
        uint64_t bytes;
        unsigned percent;       /* 1..100, or 0 when bytes is meant */
};

/* A cap that may be unset (no cap) or 0: a size, or a share of what the key
 * measures against (documented per key). */
struct config_cap {
        bool set;
        uint64_t bytes;
        unsigned percent;       /* 0..1000, or 0 with bytes */
        bool is_percent;
};

struct config {
        /* [Daemon] */
        char *socket_path;
        unsigned workers;
        unsigned fault_threads; /* 0: one per online CPU */
        int nice;               /* of every daemon thread, -20..19 */
        int log_level;          /* LOG_* */
        char **allowed_users;   /* NULL-terminated; names or numeric uids */
        char **allowed_groups;  /* NULL-terminated; names or numeric gids */
        char **admin_users;     /* may call SetPolicy/Reload besides root */
        char **admin_groups;

        /* [Policy] */
        uint32_t threshold;     /* default promotion threshold, pages */
        uint64_t min_size;      /* smallest range registered, bytes */
        bool dense_predict;
        uint32_t max_window;    /* largest served window, pages */

        /* [Pool] HugetlbMaxSize=: 2 MiB pages the daemon may add to vm.nr_hugepages */
        struct config_size hugetlb_max;
        /* [Pool] ShmemMaxSize=: size of the shmem backend's tmpfs (read at start) */
        struct config_size shmem_max;

        /* [Budgets] */
        unsigned max_clients;
        unsigned max_ranges;    /* per client */
        unsigned max_connections_per_user;      /* per uid, handshakes included */
        unsigned handshake_timeout_sec;
        unsigned max_request_rate;      /* per client and second; 0: no limit */
        struct config_size huge_per_client;     /* hugetlb pages a client may be charged; 0: no limit */
        struct config_size shmem_per_client;    /* bytes of shared files a client may hold; 0: no own limit */
        struct config_size headroom_margin;     /* room kept under a cgroup limit; 0: min(10%, 64M) */
        struct config_cap max_bloat;            /* zero-filled bytes of promoted regions, in total */
        struct config_cap max_bloat_per_client; /* the same per client (percent: of its 4 KiB pages in use) */

        /* [Pressure] */
        struct config_size low_mem_available;   /* MemAvailable under this is pressure (percent: of MemTotal) */

        struct config_program *programs;
        size_t n_programs;
};

/*
 * Command-line options that override the file: each bit names a field of
 * struct config that the command line set (config_apply_overrides copies it).
 */
enum {
        CONFIG_SET_SOCKET = 1u << 0,
        CONFIG_SET_WORKERS = 1u << 1,
        CONFIG_SET_LOG_LEVEL = 1u << 2,
        CONFIG_SET_ALLOWED_GROUPS = 1u << 3,
        CONFIG_SET_THRESHOLD = 1u << 4,
        CONFIG_SET_DENSE_PREDICT = 1u << 5,
        CONFIG_SET_MAX_WINDOW = 1u << 6,
        CONFIG_SET_MAX_CLIENTS = 1u << 7,
        CONFIG_SET_MAX_RANGES = 1u << 8,
        CONFIG_SET_FAULT_THREADS = 1u << 9,
};

/* level: LOG_ERR for an error (the load fails), LOG_WARNING otherwise. */
typedef void (*config_report_fn)(void *userdata, int level, const char *msg);

/* Fill in the built-in defaults. Returns 0 or -ENOMEM. */
int config_init(struct config *c);
void config_done(struct config *c);
/* Deep copy of src into *dst (dst uninitialised). 0 or -ENOMEM. */
int config_copy(struct config *dst, const struct config *src);

/*
 * Parse `path` on top of what *c holds. Every problem is reported as
 * "PATH:LINE: KEY: why". Returns 0, -ENOENT (no such file; nothing
 * reported), -EINVAL (at least one error was reported; *c is then
 * partially updated: parse into a scratch copy), or another -errno.
 */
int config_load(struct config *c, const char *path, config_report_fn report, void *userdata);

/* Copy the fields named in `mask` (CONFIG_SET_*) from src to dst. 0 or -ENOMEM. */
int config_apply_overrides(struct config *dst, const struct config *src, unsigned mask);

/* The [Program:NAME] entry for an executable name, or NULL. */
const struct config_program *config_find_program(const struct config *c, const char *name);

/* Value parsers shared with the command line; 0 or -EINVAL/-ERANGE. */
int config_parse_size(const char *s, uint64_t *ret);
int config_parse_bool(const char *s, bool *ret);
/* Pages of a 2 MiB region: "64", "256K", "12.5%" -> 1..512. */
int config_parse_pages(const char *s, uint32_t *ret);

#endif
