/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * notify.h: what the daemon tells its service manager (sd_notify: READY,
 * STATUS, WATCHDOG, RELOADING, STOPPING) and the listening socket it may be
 * handed (socket activation, sd_listen_fds). Without systemd, or when built
 * without libsystemd, every call is a harmless no-op.
 */
#ifndef HP_NOTIFY_H
#define HP_NOTIFY_H

#include <stdint.h>

/*
 * The listening socket passed by systemd (hugepaged.socket): a fd >= 0,
 * -ENOENT when none was passed, or -EINVAL when what was passed is not one
 * listening AF_UNIX SOCK_SEQPACKET socket.
 */
int notify_listen_fd(void);

void notify_ready(void);
void notify_reloading(void);
void notify_stopping(void);
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_watchdog(void);
/* Watchdog interval requested by the service manager, µs; 0 = none. */
uint64_t notify_watchdog_usec(void);

#endif
