/* lifecycle.h - what the process says about its own life, at each step main.c takes:
 * to the admin side, through view_process() (the last reload's outcome and time, the
 * reload counts, the drain: /metrics, /stats and /healthz), and to systemd when it
 * started twlb with Type=notify (os/sdnotify.h: READY=1, RELOADING=1, STOPPING=1 and
 * STATUS= lines).  Everything here runs on the main thread.
 *
 *   start -> lifecycle_new() ... lifecycle_ready()     the listeners are open
 *   SIGHUP -> lifecycle_reload_begin() ... lifecycle_reload_end(ok)
 *   SIGTERM -> lifecycle_stopping()                      the drain begins
 *   drained -> lifecycle_close()                         before the loop ends */
#ifndef TWLB_LIFECYCLE_H
#define TWLB_LIFECYCLE_H

#include <uv.h>

#include "runtime/view.h"

struct lifecycle;

/* The figures for STATUS= lines: the runtime as of now, or NULL. */
typedef const struct view *lifecycle_view_fn(void *arg);

/* Now is the start: the last successful "reload" is now.  NULL when out of memory
 * (the process then runs without telling anyone). */
struct lifecycle *lifecycle_new(uv_loop_t *loop, lifecycle_view_fn *view, void *arg);

/* Everything is open and serving: READY=1, and a STATUS= line every few seconds. */
void lifecycle_ready(struct lifecycle *l);

/* A reload begins (RELOADING=1), and ended: <ok> 1 when the new configuration is in
 * force, 0 when the running one was kept.  Counted, and READY=1 again. */
void lifecycle_reload_begin(struct lifecycle *l);
void lifecycle_reload_end(struct lifecycle *l, int ok);

/* The drain begins: /healthz answers 503 from now on, STOPPING=1. */
void lifecycle_stopping(struct lifecycle *l);

/* Close the timer and free <l> once it has closed (run the loop afterwards).  NULL ok. */
void lifecycle_close(struct lifecycle *l);

#endif
