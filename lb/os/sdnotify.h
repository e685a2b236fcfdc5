/* sdnotify.h - telling systemd what twlb is doing, for a unit with Type=notify: the
 * sd_notify(3) protocol through libsystemd, its reference implementation (present on
 * every systemd host, and what systemd itself tests the protocol against).
 *
 * systemd sets NOTIFY_SOCKET in the environment of a Type=notify service; without it
 * (started by hand, or by a Type=simple unit) every call here does nothing.  A message
 * that cannot be sent is logged once and otherwise ignored: twlb keeps serving.  Main
 * thread only (runtime/lifecycle.c). */
#ifndef TWLB_SDNOTIFY_H
#define TWLB_SDNOTIFY_H

/* 1 when NOTIFY_SOCKET is set. */
int sdnotify_enabled(void);

/* READY=1: started, or a reload ended (whatever its outcome). */
void sdnotify_ready(const char *status);
/* MAINPID=<this process>: it took over from the unit's main process (takeover.h);
 * the unit needs NotifyAccess=all for systemd to take it. */
void sdnotify_mainpid(void);
/* Tell systemd nothing more: a new process took over as the unit's main process (its
 * STOPPING=1 would stop the unit). */
void sdnotify_silence(void);
/* RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC now, as systemd wants it). */
void sdnotify_reloading(const char *status);
/* STOPPING=1: the drain began. */
void sdnotify_stopping(const char *status);
/* STATUS= alone: one line for `systemctl status`. */
void sdnotify_status(const char *status);

#endif
