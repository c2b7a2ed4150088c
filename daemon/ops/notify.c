/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * notify.c: sd_notify(3) and sd_listen_fds(3) for hugepaged.service and
 * hugepaged.socket. Called on the main thread; each call is one datagram to
 * $NOTIFY_SOCKET at most, never blocking.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#if HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"
#include "notify.h"

#if HAVE_LIBSYSTEMD

int notify_listen_fd(void)
{
        int n = sd_listen_fds(1);       /* 1: unset $LISTEN_FDS, children must not see it */
        if (n < 0)
                return log_error_errno(n, "cannot read the sockets passed by systemd: %m");
        if (n == 0)
                return -ENOENT;
        if (n > 1)
                return log_error_errno(EINVAL, "systemd passed %d sockets; hugepaged.socket should pass one", n);
        if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_SEQPACKET, 1, NULL, 0) <= 0)
                return log_error_errno(EINVAL, "the socket passed by systemd is not a listening AF_UNIX "
                                       "SOCK_SEQPACKET socket (ListenSequentialPacket= in hugepaged.socket)");
        return SD_LISTEN_FDS_START;
}

void notify_ready(void)
{
        sd_notify(0, "READY=1");
}

void notify_reloading(void)
{
        sd_notify(0, "RELOADING=1");
}

void notify_stopping(void)
{
        sd_notify(0, "STOPPING=1");
}

void notify_status(const char *fmt, ...)
{
        char buf[256];
        va_list ap;

        if (!getenv("NOTIFY_SOCKET"))
                return;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        sd_notifyf(0, "STATUS=%s", buf);
}

void notify_watchdog(void)
{
        sd_notify(0, "WATCHDOG=1");
}

uint64_t notify_watchdog_usec(void)
{
        uint64_t usec = 0;
        return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

#else

int notify_listen_fd(void) { return -ENOENT; }
void notify_ready(void) {}
void notify_reloading(void) {}
void notify_stopping(void) {}
void notify_status(const char *fmt, ...) {}
void notify_watchdog(void) {}
uint64_t notify_watchdog_usec(void) { return 0; }

#endif
