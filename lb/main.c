/* main.c - the twlb command line.
 *
 *   twlb -c FILE        run in the foreground on FILE
 *   twlb --check FILE   validate FILE: "configuration ok", or every error (exit 1)
 *
 * SIGTERM / SIGINT: stop accepting, let live connections finish for drain_timeout_ms,
 * exit 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "config/config.h"
#include "os/log.h"
#include "runtime/server.h"
#include "sim/cli.h"
#include "os/statefile.h"

#define TWLB_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "usage: twlb -c FILE        run the balancer on FILE (foreground)\n"
               "       twlb --check FILE   validate FILE and exit\n"
               "       twlb simulate -c FILE --rate R --duration S [...]   capacity planner\n"
               "       twlb --version\n");
}

/* Print every config error and the summary; returns the config or NULL.  <to_log>: a
 * reload, where errors go to the log and the old config stays. */
static struct config *load_or_report(const char *path, int to_log)
{
    struct cfg_errors errs = {0};
    struct config *cfg = config_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++) {
            if (to_log)
                log_error("%s", errs.msg[i]);
            else
                fprintf(stderr, "%s\n", errs.msg[i]);
        }
        if (to_log)
            log_error("reload: %zu error%s in %s; keeping the running configuration", errs.n,
                      errs.n == 1 ? "" : "s", path);
        else
            fprintf(stderr, "twlb: %zu error%s in %s; not starting\n", errs.n,
                    errs.n == 1 ? "" : "s", path);
    }
    cfg_errors_free(&errs);
    return cfg;
}

/* One config generation: the server built from it.  A reload makes a new one; the old
 * one lives until its last connection has ended. */
struct gen {
    struct gen *next;
    struct server *srv;
    struct config *cfg;
};

struct app {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sigusr1, sighup;
    uv_timer_t deadline; /* the drain deadline, for every generation at once */
    const char *path;
    struct server *srv;  /* the current generation */
    struct gen *gens;    /* every generation still alive, the current one included */
    int stopping;        /* SIGTERM/SIGINT seen: draining every generation */
    int exiting;         /* the process handles are closing; the loop ends after them */
};

#include "runtime/session.h"

static void gen_free(struct app *app, struct server *srv)
{
    for (struct gen **g = &app->gens; *g; g = &(*g)->next)
        if ((*g)->srv == srv) {
            struct gen *dead = *g;
            *g = dead->next;
            server_free(dead->srv);
            config_free(dead->cfg);
            free(dead);
            return;
        }
}

/* Stopping, and no connection of any generation is left: close what keeps the loop
 * running, once.  The retired generations are gone already (they free themselves when
 * their last connection ends); the current one is freed after the loop. */
static void maybe_exit(struct app *app)
{
    if (!app->stopping || app->exiting || app->srv->draining != 2)
        return;
    for (struct gen *g = app->gens; g; g = g->next)
        if (g->srv != app->srv)
            return; /* an older generation still has connections */
    app->exiting = 1;
    log_info("drained; exiting");
    server_close(app->srv);
    uv_close((uv_handle_t *)&app->deadline, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigusr1, NULL);
    uv_close((uv_handle_t *)&app->sighup, NULL);
}

static void on_gen_gone(struct server *srv)
{
    struct app *app = srv->loop->data;
    gen_free(app, srv);
    maybe_exit(app);
}

static void on_drained(struct server *srv)
{
    maybe_exit(srv->loop->data);
}

/* The drain time is over: every generation's remaining connections are closed now. */
static void on_drain_deadline(uv_timer_t *t)
{
    struct app *app = t->data;
    uint64_t open = 0;
    for (struct gen *g = app->gens; g; g = g->next)
        open += g->srv->sessions_active;
    log_warn("drain time (%u ms) is over: closing %llu remaining connections",
             app->srv->cfg->drain_timeout_ms, (unsigned long long)open);
    for (struct gen *g = app->gens, *next; g; g = next) {
        next = g->next; /* an aborted generation may free itself (and g) */
        session_abort_all(g->srv);
    }
}

/* SIGHUP: validate the file again; apply it only if it is valid, atomically: a new
 * generation takes over the unchanged listeners and every port map that still exists,
 * the old one finishes its connections. */
static void on_reload_signal(uv_signal_t *h, int signum)
{
    struct app *app = h->data;
    if (app->stopping)
        return;
    log_info("SIGHUP: reloading %s", app->path);
    struct config *cfg = load_or_report(app->path, 1);
    if (!cfg)
        return;
    char err[512] = "";
    struct gen *g = calloc(1, sizeof *g);
    struct server *nsrv = g ? server_new(&app->loop, cfg, app->srv, err, sizeof err) : NULL;
    if (!nsrv || server_start(nsrv, app->srv, err, sizeof err) < 0) {
        log_error("reload: %s; keeping the running configuration", g ? err : "out of memory");
        if (nsrv) {
            server_close(nsrv);
            g->srv = nsrv;
            g->cfg = cfg;
            g->next = app->gens;
            app->gens = g;
            server_retire(nsrv, on_gen_gone); /* frees it once its handles are closed */
        } else {
            free(g);
            config_free(cfg);
        }
        return;
    }
    g->srv = nsrv;
    g->cfg = cfg;
    g->next = app->gens;
    app->gens = g;
    nsrv->on_drained = on_drained;
    struct server *old = app->srv;
    app->srv = nsrv;
    log_set_level(cfg->log.level);
    server_retire(old, on_gen_gone);
    if (cfg->reuse.state_file)
        statefile_save(nsrv, cfg->reuse.state_file);
    log_info("reloaded %s", app->path);
}

/* Log rotation: the old files were renamed; open new ones by name. */
static void on_reopen_signal(uv_signal_t *h, int signum)
{
    int r = log_reopen();
    if (r < 0)
        log_error("SIGUSR1: cannot reopen the log files: %s (still writing the old ones)",
                  strerror(-r));
    else
        log_info("SIGUSR1: log files reopened");
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    struct app *app = h->data;
    if (app->stopping) {
        log_info("signal %d during drain: ignored (drain ends by itself)", signum);
        return;
    }
    log_info("signal %d: stopping", signum);
    app->stopping = 1;
    /* Older generations still finishing after a reload get the same deadline. */
    uv_timer_start(&app->deadline, on_drain_deadline, app->srv->cfg->drain_timeout_ms, 0);
    for (struct gen *g = app->gens; g; g = g->next)
        if (g->srv != app->srv)
            server_drain(g->srv);
    server_drain(app->srv); /* last: may end the process at once */
}

/* More connections than the default 1024 descriptors is the normal case for a proxy. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int run(const char *path)
{
    struct config *cfg = load_or_report(path, 0);
    if (!cfg)
        return 1;
    log_set_level(cfg->log.level);
    int lr = log_open(cfg->log.file);
    if (lr == 0)
        lr = log_access_open(cfg->log.access_log, cfg->log.access_log_json);
    if (lr < 0) {
        fprintf(stderr, "twlb: cannot open log file: %s\n", strerror(-lr));
        config_free(cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    struct app app;
    memset(&app, 0, sizeof app);
    uv_loop_init(&app.loop);
    app.loop.data = &app;
    app.path = path;
    char err[512] = "";
    app.srv = server_new(&app.loop, cfg, NULL, err, sizeof err);
    if (!app.srv) {
        fprintf(stderr, "twlb: %s\n", err);
        config_free(cfg);
        uv_loop_close(&app.loop);
        return 1;
    }
    app.gens = calloc(1, sizeof *app.gens);
    if (!app.gens) {
        fprintf(stderr, "twlb: out of memory\n");
        server_free(app.srv);
        config_free(cfg);
        return 1;
    }
    app.gens->srv = app.srv;
    app.gens->cfg = cfg;
    app.srv->on_drained = on_drained;
    int rc = 0;
    if (server_start(app.srv, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "twlb: %s\n", err);
        server_close(app.srv);
        rc = 1;
    } else {
        uv_timer_init(&app.loop, &app.deadline);
        app.deadline.data = &app;
        uv_signal_init(&app.loop, &app.sigterm);
        uv_signal_init(&app.loop, &app.sigint);
        app.sigterm.data = app.sigint.data = &app;
        uv_signal_start(&app.sigterm, on_stop_signal, SIGTERM);
        uv_signal_start(&app.sigint, on_stop_signal, SIGINT);
        uv_signal_init(&app.loop, &app.sigusr1);
        uv_signal_start(&app.sigusr1, on_reopen_signal, SIGUSR1);
        uv_signal_init(&app.loop, &app.sighup);
        app.sigusr1.data = app.sighup.data = &app;
        uv_signal_start(&app.sighup, on_reload_signal, SIGHUP);
        log_info("twlb %s running with %s", TWLB_VERSION, path);
    }
    uv_run(&app.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&app.loop) != 0)
        log_warn("event loop closed with handles still open");
    while (app.gens)
        gen_free(&app, app.gens->srv);
    log_close();
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "simulate"))
        return simulate_main(argc - 1, argv + 1);
    if (argc == 3 && !strcmp(argv[1], "--check")) {
        struct config *cfg = load_or_report(argv[2], 0);
        if (!cfg)
            return 1;
        printf("configuration ok\n");
        config_free(cfg);
        return 0;
    }
    if (argc == 3 && (!strcmp(argv[1], "-c") || !strcmp(argv[1], "--config")))
        return run(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("twlb %s\n", TWLB_VERSION);
        return 0;
    }
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
