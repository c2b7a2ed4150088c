/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault-threads.h: the threads that serve the clients' faults (FaultThreads=,
 * fault-threads.c). Every ready client's userfaultfd is in one epoll set
 * with EPOLLONESHOT; the threads wait in it, one event each. A client's
 * uffd is thus served by one thread at a time, in order, and re-armed when
 * that thread is done with it; an idle thread takes the next ready client,
 * so one busy client never holds up the others and no client is tied to a
 * thread. A thread serves a client with the client's lock held (client.h).
 *
 * The main thread adds a client once its handshake is done and removes it
 * when it disconnects, both with the client's lock held. A broken uffd found
 * by a fault thread is handed to the main thread, which disconnects the
 * client. The epoll set names clients by id, and a thread takes a reference
 * on a client under the table's lock before it locks the client: a client
 * is never used after it is freed, and an event for a client gone is dropped.
 */
#ifndef HP_FAULT_THREADS_H
#define HP_FAULT_THREADS_H

struct client;
struct manager;

/* Start n threads (0: one per online CPU), once the loop exists. */
int fault_threads_start(struct manager *m, unsigned n);
/* Stop them (a batch being served finishes first); before the clients are freed. */
void fault_threads_stop(struct manager *m);
/* Main thread, c locked and READY: serve c's uffd from now on. */
int fault_threads_add(struct client *c);
/* Main thread, c locked: serve it no more (no thread re-arms it after this). */
void fault_threads_remove(struct client *c);
/* Threads running. */
unsigned fault_threads_count(const struct manager *m);

#endif
