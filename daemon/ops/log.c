/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log.c: formats one line per message to stderr with a syslog priority
 * prefix ("<3>") when stderr is the journal, plain otherwise. Must stay
 * async-signal-unsafe-free of allocation: only stdio on a stack buffer.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

int log_max_level = LOG_INFO;

int log_parse_level(const char *s)
{
        static const struct { const char *name; int level; } t[] = {
                { "error", LOG_ERR }, { "err", LOG_ERR }, { "warning", LOG_WARNING },
                { "warn", LOG_WARNING }, { "notice", LOG_NOTICE }, { "info", LOG_INFO },
                { "debug", LOG_DEBUG },
        };
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
                if (strcasecmp(s, t[i].name) == 0)
                        return t[i].level;
        return -EINVAL;
}

int log_internal(int level, int error, const char *fmt, ...)
{
        static const char *const prefix[] = { "emerg", "alert", "crit", "error", "warning",
                                              "notice", "info", "debug" };
        char buf[1024];
        va_list ap;
        int saved = errno;

        if (error != 0)
                errno = abs(error);     /* so %m prints the error passed in */
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (getenv("JOURNAL_STREAM"))
                fprintf(stderr, "<%d>%s\n", level, buf);
        else
                fprintf(stderr, "hugepaged[%s]: %s\n", prefix[level & 7], buf);
        errno = saved;
        return -abs(error);
}
