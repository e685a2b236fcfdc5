/* pump.h - the bytes-both-ways half of a session (see pump.c).  Used by session.c only. */
#ifndef TWLB_PUMP_H
#define TWLB_PUMP_H

struct session;

/* The backend connection is established: start moving bytes both ways, with the idle
 * timeout of the session's pool. */
void pump_start(struct session *s);

#endif
