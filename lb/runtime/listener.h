/* listener.h - the listening sockets of a generation.  A reload takes over every
 * listener whose address did not change, still open (a changed backlog is set on the
 * same socket), so no client is refused while the configuration changes. */
#ifndef TWLB_LISTENER_H
#define TWLB_LISTENER_H

#include <stddef.h>

#include "runtime/types.h"

/* Open g's listeners, taking over from <prev> those with the same address (and setting
 * the new backlog on them), without accepting on them for <g> yet (listener_commit_all).
 * On failure everything taken is given back to <prev>, everything opened is closed, and
 * a negative errno is returned with a message in <err>. */
int listener_open_all(struct gen *g, struct gen *prev, char *err, size_t errlen);

/* The generation <g> is committed (a start, or a reload every worker prepared): its
 * listeners serve it from now on, and the new ones start accepting.  Until then a
 * listener taken over keeps serving the previous generation, and a new one only queues
 * clients in its backlog, so no client is ever accepted into a generation that an
 * abandoned reload frees. */
void listener_commit_all(struct gen *g);

/* A prepared reload is abandoned: the listeners <g> took over from <prev> go back to it,
 * still open, with their old backlog; those opened for <g> are closed. */
void listener_give_back(struct gen *g, struct gen *prev);

/* Poll again the listeners of <g> that stopped for lack of descriptors (the worker's
 * housekeeping tick calls this). */
void listener_resume_all(struct gen *g);

/* Poll <lis> again unless it is paused (descriptors or a limit). */
void listener_poll(struct listener_rt *lis);

/* Sockets taken over from another twlb (runtime/takeover.h): <fds> are one listening
 * socket per worker of that process on one address, in worker order.  listener_open
 * then gives worker i the i-th socket of its address (setting the new backlog on it)
 * instead of opening one: the same socket, with the clients already in its queue.
 * Call before the workers start.  0 or a negative errno. */
#define LISTENER_INHERIT_MAX 64
#define LISTENER_INHERIT_SETS 64
int listener_inherit(const int *fds, unsigned n);
/* After the start: close what no worker took (an address the new config dropped, or a
 * worker the new process lacks).  Returns how many were closed. */
size_t listener_inherit_close_rest(void);

/* Poll g's listeners again (on) or stop polling them (off) without closing them; while
 * w->accept_off is set nothing polls them again. */
void listener_accept(struct gen *g, int on);

/* Stop listening on every listener still open in <g>. */
void listener_close_all(struct gen *g);

#endif
