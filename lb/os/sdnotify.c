/* sdnotify.c - see sdnotify.h. */
#include "os/sdnotify.h"

#include <unistd.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "os/clock.h"
#include "os/log.h"

static int silenced;

void sdnotify_silence(void)
{
    silenced = 1;
}

int sdnotify_enabled(void)
{
    const char *s = silenced ? NULL : getenv("NOTIFY_SOCKET");
    return s && *s;
}

static void notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void notify(const char *fmt, ...)
{
    static int warned;
    if (!sdnotify_enabled())
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int r = sd_notify(0, msg);
    if (r < 0 && !warned) {
        warned = 1;
        log_warn("systemd: cannot notify %s: %s (told once)", getenv("NOTIFY_SOCKET"),
                 strerror(-r));
    }
}

void sdnotify_ready(const char *status)
{
    notify("READY=1\nSTATUS=%s", status);
}

void sdnotify_mainpid(void)
{
    notify("MAINPID=%d", (int)getpid());
}

void sdnotify_reloading(const char *status)
{
    notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s",
           (unsigned long long)(clock_mono_ns() / 1000), status);
}

void sdnotify_stopping(const char *status)
{
    notify("STOPPING=1\nSTATUS=%s", status);
}

void sdnotify_status(const char *status)
{
    notify("STATUS=%s", status);
}
