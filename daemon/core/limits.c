/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * limits.c: the bounds a client cannot push past, besides the ones checked
 * where the resource is taken (MaxClients at accept, MaxRangesPerClient in
 * register, SYNC waits in client.c):
 *  - MaxConnectionsPerUser: connections of one uid (SO_PEERCRED at accept,
 *    so a connection that never says hello counts too);
 *  - HandshakeTimeoutSec: a connection must finish the handshake (hello and
 *    its uffd) in time, or it is told so and dropped: it holds a slot;
 *  - MaxRequestsPerSecond: requests per client, with a one-second burst. A
 *    client over its rate is not read until the rate allows again (its
 *    requests wait in its own socket; nobody else's do).
 * One timerfd, polled by the loop, serves both deadlines; it is armed only
 * while something waits on it.
 * Runs on the main thread. Must never block or read a client's socket.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "log.h"
#include "client.h"
#include "manager.h"
#include "util.h"

static void rearm(struct manager *m)
{
        struct manager_limits *l = &m->limits;
        uint64_t next = 0;

        if (l->hs_head)
                next = l->hs_head->limits.accepted_ns + (uint64_t)m->cfg.handshake_timeout_sec * 1000000000ull;
        for (struct client *c = l->throttled; c; c = c->limits.throttled_next)
                if (!next || c->limits.resume_ns < next)
                        next = c->limits.resume_ns;
        if (next == l->armed_ns || l->timer_fd < 0)
                return;
        struct itimerspec its = {
                .it_value = { .tv_sec = (time_t)(next / 1000000000ull), .tv_nsec = (long)(next % 1000000000ull) },
        };
        if (timerfd_settime(l->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
                log_warning_errno(errno, "limits timer: %m");
                return;
        }
        l->armed_ns = next;
}

static void handshake_timed_out(struct client *c)
{
        struct hp_error e = { 0 };

        hp_header_init(&e.hdr, HP_MSG_ERROR, sizeof(e), 0, -ETIMEDOUT);
        snprintf(e.text, sizeof(e.text), "no %s within %u s (HandshakeTimeoutSec=)",
                 c->state == CLIENT_HELLO ? "hello" : "userfaultfd", c->m->cfg.handshake_timeout_sec);
        (void)hp_send_fd(c->sock, &e, sizeof(e), -1);
        client_disconnect(c, "handshake timed out");
}

static void on_timer(struct watch *w, int revents)
{
        struct manager *m = w->data;
        struct manager_limits *l = &m->limits;
        uint64_t expirations, now = now_ns();
        uint64_t timeout = (uint64_t)m->cfg.handshake_timeout_sec * 1000000000ull;

        if (read(l->timer_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
                log_debug_errno(errno, "limits timer: %m");
        l->armed_ns = 0;
        /* accept order = deadline order: stop at the first one still in time */
        while (l->hs_head && l->hs_head->limits.accepted_ns + timeout <= now)
                handshake_timed_out(l->hs_head);        /* unlinks it */
        for (struct client **pc = &l->throttled; *pc;) {
                struct client *c = *pc;
                if (c->limits.resume_ns > now) {
                        pc = &c->limits.throttled_next;
                        continue;
                }
                *pc = c->limits.throttled_next;
                c->limits.throttled = false;
                watch_defer(&c->w_sock);        /* read its socket again */
        }
        rearm(m);
}

int limits_start(struct manager *m)
{
        struct manager_limits *l = &m->limits;

        l->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (l->timer_fd < 0)
                return log_error_errno(errno, "timerfd: %m");
        return watch_start(&m->loop, &l->w_timer, l->timer_fd, on_timer, m);
}

void limits_stop(struct manager *m)
{
        m->limits.timer_fd = safe_close(m->limits.timer_fd);
}

int limits_admit(struct manager *m, uid_t uid, char *why, size_t whylen)
{
        unsigned n = 0;

        if (m->nclients >= m->cfg.max_clients) {
                snprintf(why, whylen, "too many clients (MaxClients=%u)", m->cfg.max_clients);
                return -EUSERS;
        }
        for (struct client *c = m->clients; c; c = c->next)
                if (c->uid == uid && c->state != CLIENT_DEAD)
                        n++;
        if (n >= m->cfg.max_connections_per_user) {
                snprintf(why, whylen, "too many connections of uid %u (MaxConnectionsPerUser=%u)", (unsigned)uid,
                         m->cfg.max_connections_per_user);
                return -EUSERS;
        }
        return 0;
}

void limits_handshake_begin(struct client *c)
{
        struct manager_limits *l = &c->m->limits;
        bool was_empty = !l->hs_head;

        c->limits.accepted_ns = now_ns();
        c->limits.in_handshake = true;
        c->limits.hs_next = NULL;
        c->limits.hs_prev = l->hs_tail;
        if (l->hs_tail)
                l->hs_tail->limits.hs_next = c;
        else
                l->hs_head = c;
        l->hs_tail = c;
        if (was_empty)
                rearm(c->m);
}

void limits_handshake_end(struct client *c)
{
        struct manager_limits *l = &c->m->limits;

        if (!c->limits.in_handshake)
                return;
        if (c->limits.hs_prev)
                c->limits.hs_prev->limits.hs_next = c->limits.hs_next;
        else
                l->hs_head = c->limits.hs_next;
        if (c->limits.hs_next)
                c->limits.hs_next->limits.hs_prev = c->limits.hs_prev;
        else
                l->hs_tail = c->limits.hs_prev;
        c->limits.hs_prev = c->limits.hs_next = NULL;
        c->limits.in_handshake = false;
        /* an early timer tick costs one wakeup: no rearm here */
}

void limits_forget(struct client *c)
{
        limits_handshake_end(c);
        if (c->limits.throttled) {
                for (struct client **pc = &c->m->limits.throttled; *pc; pc = &(*pc)->limits.throttled_next)
                        if (*pc == c) {
                                *pc = c->limits.throttled_next;
                                break;
                        }
                c->limits.throttled = false;
        }
}

bool limits_take_request(struct client *c)
{
        struct manager *m = c->m;

        if (c->limits.throttled)
                return false;
        uint64_t next = rate_limit_take(&c->limits.requests, now_ns(), m->cfg.max_request_rate,
                                        m->cfg.max_request_rate);
        if (next == 0)
                return true;
        log_debug("client %d: over MaxRequestsPerSecond=%u, not read for %llu us", c->pid, m->cfg.max_request_rate,
                  (unsigned long long)(next - now_ns()) / 1000);
        c->limits.resume_ns = next;
        c->limits.throttled = true;
        c->limits.throttled_next = m->limits.throttled;
        m->limits.throttled = c;
        if (!m->limits.armed_ns || next < m->limits.armed_ns)
                rearm(m);
        return false;
}
