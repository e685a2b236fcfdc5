/* fdpass.h - descriptors over a Unix stream socket (SCM_RIGHTS): how a new twlb process
 * takes over the listening sockets and the state file of a running one
 * (runtime/takeover.h).  The receiver gets its own descriptors of the same open file
 * descriptions: a listening socket keeps its accept queue, a file its flock.
 *
 * Return convention: 0 / a count, or a negative errno. */
#ifndef TWLB_FDPASS_H
#define TWLB_FDPASS_H

#include <stddef.h>

/* At most this many descriptors in one message (the kernel's SCM_MAX_FD is 253). */
#define FDPASS_MAX 64

/* Send <len> bytes (at least 1) of <buf> with <nfds> descriptors (at most FDPASS_MAX),
 * as one message.  0 or -errno. */
int fdpass_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds);

/* Receive one message into <buf> (at most <len> bytes) and its descriptors into <fds>
 * (at most FDPASS_MAX; *nfds set; received with O_CLOEXEC).  Returns the bytes read
 * (0: the peer closed) or -errno; descriptors beyond FDPASS_MAX (MSG_CTRUNC) give
 * -EMSGSIZE and none are kept. */
int fdpass_recv(int sock, void *buf, size_t len, int fds[FDPASS_MAX], size_t *nfds);

#endif
