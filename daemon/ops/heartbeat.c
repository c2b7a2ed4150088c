/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * heartbeat.c: the main thread's periodic timer (a timerfd polled by the
 * io_uring loop). Each tick publishes a statistics snapshot and the queued
 * client events to the bus thread, and tells systemd that the loop is alive
 * (WATCHDOG=1) and what it is doing (STATUS=). A tick is bounded work: one
 * pass over the clients' region tables, a few times a second.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "backend.h"
#include "bus-thread.h"
#include "client.h"
#include "heartbeat.h"
#include "promote.h"
#include "coverage.h"
#include "log.h"
#include "manager.h"
#include "notify.h"
#include "pressure.h"
#include "snapshot.h"
#include "util.h"

#define TICK_NS (200ull * 1000000ull)
#define STATUS_EVERY_NS (2000ull * 1000000ull)

void heartbeat_publish(struct manager *m)
{
        if (!m->bus)
                return;
        struct snapshot *s = snapshot_take(m);
        if (s)
                bus_thread_publish(m->bus, s);
}

static void status(struct manager *m)
{
        uint64_t faults = m->retired.faults_served, promotions = m->retired.promotions;
        for (struct client *c = m->clients; c; c = c->next) {
                client_lock(c);
                faults += c->c.faults_served;
                promotions += c->c.promotions;
                client_unlock(c);
        }
        notify_status("%u client%s, %" PRIu64 " faults served, %" PRIu64 " promotions", m->nclients,
                      m->nclients == 1 ? "" : "s", faults, promotions);
}

static void on_tick(struct watch *w, int revents)
{
        struct manager *m = w->data;
        uint64_t expirations, now = now_ns();

        if (read(m->heartbeat_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
                log_debug_errno(errno, "heartbeat timer: %m");
        pressure_tick(m);
        for (struct client *c = m->clients; c; c = c->next)
                if (c->state == CLIENT_READY) {
                        client_lock(c);
                        memcg_recheck(&c->memcg, c->pid, now);
                        promote_rearm_idle(c);
                        client_unlock(c);
                }
        coverage_tick(m);
        heartbeat_publish(m);
        backends_tick(m);
        if (m->watchdog_usec && now - m->last_watchdog_ns >= m->watchdog_usec * 1000 / 2) {
                notify_watchdog();
                m->last_watchdog_ns = now;
        }
        if (now - m->last_status_ns >= STATUS_EVERY_NS) {
                status(m);
                m->last_status_ns = now;
        }
}

int heartbeat_start(struct manager *m)
{
        uint64_t tick = TICK_NS;

        m->watchdog_usec = notify_watchdog_usec();
        if (m->watchdog_usec && m->watchdog_usec * 1000 / 4 < tick)
                tick = m->watchdog_usec * 1000 / 4;
        m->heartbeat_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (m->heartbeat_fd < 0)
                return log_error_errno(errno, "timerfd: %m");
        struct itimerspec its = {
                .it_interval = { .tv_sec = tick / 1000000000ull, .tv_nsec = tick % 1000000000ull },
                .it_value = { .tv_sec = tick / 1000000000ull, .tv_nsec = tick % 1000000000ull },
        };
        if (timerfd_settime(m->heartbeat_fd, 0, &its, NULL) < 0)
                return log_error_errno(errno, "timerfd_settime: %m");
        m->last_watchdog_ns = m->last_status_ns = now_ns();
        status(m);
        heartbeat_publish(m);
        return watch_start(&m->loop, &m->w_heartbeat, m->heartbeat_fd, on_tick, m);
}

void heartbeat_stop(struct manager *m)
{
        m->heartbeat_fd = safe_close(m->heartbeat_fd);
}
