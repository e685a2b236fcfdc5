/* accesslog.h - one access-log line per finished client connection: everything an
 * operator needs to follow a port's life.  Formats (key=value or JSON) a plain record;
 * knows nothing of sessions. */
#ifndef TWLB_ACCESSLOG_H
#define TWLB_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct access_record {
    const char *listener;
    const struct sockaddr *client;
    const char *backend, *backend_address;       /* NULL: none was chosen */
    const struct sockaddr *inside;                /* NULL with backend */
    uint16_t inside_port;
    const char *isn_mode;
    int reused_time_wait;
    uint64_t bytes_to_backend, bytes_to_client, duration_ms;
    uint64_t queue_ms;                            /* time waited in its pool's queue */
    size_t tries;
    const char *first_fin;                        /* "none", "client", "backend" */
    const char *end;
};

/* Write <r> to the access log (os/log.h), if one is open. */
void accesslog_write(const struct access_record *r);

#endif
