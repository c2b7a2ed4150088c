/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log.h: the daemon's logging to stderr (journald picks it up under systemd).
 * Functions taking an error return it negated, so a caller can write
 * `return log_error_errno(r, "…: %m")` as in systemd.
 */
#ifndef HP_LOG_H
#define HP_LOG_H

#include <stdlib.h>
#include <syslog.h>

extern int log_max_level;

int log_parse_level(const char *s); /* LOG_* or -EINVAL */
int log_internal(int level, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_full_errno(level, error, ...) \
        ({ int _l = (level), _e = (error); \
           (_l <= __atomic_load_n(&log_max_level, __ATOMIC_RELAXED)) ? log_internal(_l, _e, __VA_ARGS__) : -abs(_e); })

#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, e, __VA_ARGS__)

#endif
