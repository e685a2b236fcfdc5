/* main.c - the twlb command line.
 *
 *   twlb -c FILE                 run in the foreground on FILE
 *   twlb -c FILE --takeover SOCK take over the listening sockets of the twlb serving on
 *                                upgrade socket SOCK, which then drains (takeover.h)
 *   twlb -t [-c] FILE            validate FILE (also --check FILE, --check=FILE, like
 *                                nginx -t): "configuration ok", or every error (exit 1)
 *   twlb simulate ...            the capacity planner (sim/cli.c)
 *
 * Exit status: 0 success, 1 the configuration or the run failed, 2 bad command line.
 * SIGTERM / SIGINT: stop accepting, let live connections finish for drain_timeout_ms,
 * exit 0. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "admin/admin.h"
#include "core/version.h"
#include "config/config.h"
#include "os/log.h"
#include "os/privs.h"
#include "os/statefile.h"
#include "runtime/view.h"
#include "runtime/group.h"
#include "runtime/listener.h"
#include "runtime/lifecycle.h"
#include "runtime/preflight.h"
#include "runtime/state.h"
#include "runtime/takeover.h"
#include "os/sdnotify.h"
#include "sim/cli.h"


static const char usage_text[] =
    "usage: twlb -c FILE            run the balancer on FILE (foreground)\n"
    "       twlb -c FILE --takeover SOCK   upgrade: take over from the twlb on SOCK\n"
    "       twlb -t [-c] FILE       check FILE and exit (also --check FILE, --check=FILE)\n"
    "       twlb simulate -c FILE --rate R --duration S [...]   capacity planner\n"
    "                               (twlb simulate --help)\n"
    "       twlb -V | --version     print the version\n"
    "       twlb -h | --help        this text\n"
    "options:\n"
    "  -c, --config FILE   the JSON configuration (docs/configuration.md)\n"
    "  -t, --check[=FILE]  validate the configuration: \"configuration ok\" on stdout, or\n"
    "                      every error with file, line:col and JSON path on stderr\n"
    "  --takeover SOCK     take over the listening sockets of the twlb whose\n"
    "                      \"upgrade_socket\" is SOCK; it drains and exits once this one\n"
    "                      serves (if this one fails to start, it serves on)\n"
    "exit status: 0 success; 1 the configuration has errors, or twlb could not start\n"
    "             (or failed while running); 2 bad command line\n"
    "signals: SIGTERM/SIGINT drain and exit 0, SIGHUP reloads, SIGUSR1 reopens the logs,\n"
    "         SIGUSR2 upgrades (starts this binary's path with --takeover)\n";

static int usage_error(void)
{
    fputs(usage_text, stderr);
    return 2;
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

/* preflight_report()'s token check (runtime/ cannot include admin/). */
static int token_check(const char *path, char *err, size_t errlen)
{
    char token[ADMIN_TOKEN_MAX];
    return admin_read_token(path, token, err, errlen);
}

struct app {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sigusr1, sighup, sigusr2;
    const char *path;
    struct group *g;
    struct admin *admin;     /* NULL when "admin" is not configured */
    struct lifecycle *life;  /* reload outcome, drain, systemd (runtime/lifecycle.h) */
    struct takeover_server *upgrade; /* "upgrade_socket" (runtime/takeover.h) */
    int admin_given;         /* the admin listener was closed for a takeover */
    int stopping;
    uint64_t save_failures;  /* statefile_save_failures() when the stop began */
};

static const struct view *admin_view(void *arg)
{
    struct app *app = arg;
    return group_view(app->g);
}

static int admin_action(void *arg, const char *pool, const char *backend, const char *action)
{
    struct app *app = arg;
    return group_backend_action(app->g, pool, backend, action);
}

/* Start the admin endpoint of <c> unless <keep> already listens on the same address.
 * Returns 0 with *out set (maybe <keep>, maybe NULL when none is configured), or -1 with
 * a message in <err>; <token> is read from the token file. */
static int admin_prepare(struct app *app, const struct config *c, struct admin *keep,
                         const struct config *kept_cfg, struct admin **out,
                         char token[ADMIN_TOKEN_MAX], char *err, size_t errlen)
{
    *out = NULL;
    token[0] = 0;
    if (!c->admin.enabled)
        return 0;
    char e[400];
    if (admin_read_token(c->admin.token_file, token, e, sizeof e) < 0) {
        snprintf(err, errlen, "admin.token_file: %s", e);
        return -1;
    }
    if (keep && kept_cfg->admin.enabled && kept_cfg->admin.bind.len == c->admin.bind.len &&
        !memcmp(&kept_cfg->admin.bind.ss, &c->admin.bind.ss, c->admin.bind.len)) {
        *out = keep; /* same address: keep the socket */
        return 0;
    }
    const struct admin_hooks hooks = {admin_view, admin_action, app};
    if (admin_start(&app->loop, &c->admin.bind, &hooks, out, err, errlen) < 0)
        return -1;
    log_info("admin endpoint on http://%s/ (/metrics, /stats, /healthz)", c->admin.bind.text);
    return 0;
}

static struct app *the_app; /* for on_drained: one app per process */

static void on_drained(struct group *g)
{
    struct app *app = the_app;
    log_info("drained; exiting");
    group_stop(g);
    app->g = NULL;
    if (app->admin)
        admin_close(app->admin);
    app->admin = NULL;
    lifecycle_close(app->life);
    app->life = NULL;
    takeover_server_close(app->upgrade);
    app->upgrade = NULL;
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigusr1, NULL);
    uv_close((uv_handle_t *)&app->sighup, NULL);
    uv_close((uv_handle_t *)&app->sigusr2, NULL);
}

/* SIGHUP: validate the file again; apply it only if it is valid, atomically: a new
 * generation takes over the unchanged listeners and every port map that still exists,
 * the old one finishes its connections.  A reload that fails changes nothing: -1. */
static int reload(struct app *app)
{
    log_info("SIGHUP: reloading %s", app->path);
    struct config *cfg = load_or_report(app->path, 1);
    if (!cfg)
        return -1;
    if (preflight_report(cfg, PREFLIGHT_RELOAD, token_check, NULL) < 0) {
        config_free(cfg);
        return -1;
    }
    char err[512] = "", token[ADMIN_TOKEN_MAX];
    const struct config *old_cfg = group_config(app->g);
    struct cfg_errors later = {0};
    config_unreloadable_changes(old_cfg, cfg, &later);
    for (size_t i = 0; i < later.n; i++)
        log_warn("reload: %s", later.msg[i]);
    cfg_errors_free(&later);
    struct admin *admin;
    if (admin_prepare(app, cfg, app->admin, old_cfg, &admin, token, err, sizeof err) < 0) {
        log_error("reload: %s; keeping the running configuration", err);
        config_free(cfg);
        return -1;
    }
    enum log_level level = cfg->log.level;
    struct log_files logs; /* log.file, access_log, access_log_format: opened here */
    const char *bad = "";
    int r = log_files_prepare(&logs, cfg->log.file, cfg->log.access_log,
                              cfg->log.access_log_json, &bad);
    if (r < 0)
        snprintf(err, sizeof err, "cannot open log file %s: %s", bad, log_open_strerror(r));
    else if ((r = group_reload(app->g, cfg, err, sizeof err)) < 0)
        log_files_discard(&logs);
    config_free(cfg); /* the workers hold their own references */
    if (r < 0) {
        log_error("reload: %s; keeping the running configuration", err);
        if (admin && admin != app->admin)
            admin_close(admin);
        return -1;
    }
    if (app->admin && admin != app->admin)
        admin_close(app->admin);
    app->admin = admin;
    if (admin)
        admin_set_token(admin, token);
    log_files_commit(&logs);
    log_set_level(level);
    log_info("reloaded %s", app->path);
    return 0;
}

static void on_reload_signal(uv_signal_t *h, int signum)
{
    struct app *app = h->data;
    if (app->stopping)
        return;
    lifecycle_reload_begin(app->life);
    lifecycle_reload_end(app->life, reload(app) == 0);
}

/* Log rotation: the old files were renamed; open new ones by name. */
static void on_reopen_signal(uv_signal_t *h, int signum)
{
    int r = log_reopen();
    if (r < 0)
        log_error("SIGUSR1: cannot reopen the log files: %s (still writing the old ones)",
                  log_open_strerror(r));
    else
        log_info("SIGUSR1: log files reopened");
}

static void stop(struct app *app)
{
    app->stopping = 1;
    app->save_failures = statefile_save_failures(); /* the drain saves once more */
    lifecycle_stopping(app->life);
    group_drain(app->g, on_drained);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    struct app *app = h->data;
    if (app->stopping) {
        log_info("signal %d during drain: ignored (drain ends by itself)", signum);
        return;
    }
    log_info("signal %d: stopping", signum);
    stop(app);
}

static struct group *upgrade_group(void *arg)
{
    struct app *app = arg;
    return app->stopping ? NULL : app->g;
}

/* A new process took the listening sockets and serves: drain as on SIGTERM. */
static void upgrade_handed(void *arg, pid_t to)
{
    struct app *app = arg;
    log_info("upgrade: pid %d took over; stopping", (int)to);
    sdnotify_silence(); /* it is the unit's main process now: no STOPPING=1 from here */
    stop(app);
}

static char self_exe[4096]; /* this binary's path as started: a new one may be there now */

/* SIGUSR2: start the binary at our path with --takeover on our upgrade socket. */
static void on_upgrade_signal(uv_signal_t *h, int signum)
{
    struct app *app = h->data;
    const struct config *cfg = app->g ? group_config(app->g) : NULL;
    char err[512];
    if (app->stopping || !cfg)
        log_warn("SIGUSR2: stopping already; no upgrade");
    else if (!cfg->upgrade_socket)
        log_error("SIGUSR2: no \"upgrade_socket\" in the configuration; no upgrade");
    else if (takeover_spawn(&app->loop, self_exe, app->path, cfg->upgrade_socket, err,
                            sizeof err) < 0)
        log_error("SIGUSR2: %s; no upgrade", err);
}

/* The sockets go to a new process (give=1): let the admin address go, it binds it next;
 * the takeover failed (give=0): bind it again. */
static void upgrade_handover(void *arg, int give)
{
    struct app *app = arg;
    if (give && app->admin) {
        admin_close(app->admin);
        app->admin = NULL;
        app->admin_given = 1;
    } else if (!give && app->admin_given && app->g) {
        char err[512], token[ADMIN_TOKEN_MAX];
        app->admin_given = 0;
        if (admin_prepare(app, group_config(app->g), NULL, NULL, &app->admin, token, err,
                          sizeof err) < 0)
            log_error("takeover failed: admin endpoint: %s", err);
        else
            admin_set_token(app->admin, token);
    }
}

/* "user" (and "group"): who twlb becomes once everything is open. */
static int lookup_user(const struct config *cfg, struct privs_target *t, char *err,
                       size_t errlen)
{
    if (!cfg->user)
        return 0;
    if (privs_lookup(cfg->user, cfg->group, t, err, errlen) < 0)
        return -1;
    return 0;
}

/* After every worker has started (listeners, state file, admin socket open) and before
 * serving: become <t> on every thread, keeping CAP_NET_ADMIN and CAP_NET_BIND_SERVICE.
 * Capabilities are per thread on Linux: each worker changes its own (privs.h). */
static int drop_privileges(struct group *g, const struct privs_target *t, char *err,
                           size_t errlen)
{
    if (geteuid() != 0) {
        snprintf(err, errlen, "\"user\": \"%s\" needs twlb to start as root", t->user);
        return -1;
    }
    char e[256] = "";
    if (privs_thread_prepare(e, sizeof e) < 0 ||
        group_on_every_thread(g, privs_thread_prepare, e, sizeof e) < 0 ||
        privs_switch_ids(t, e, sizeof e) < 0 || privs_thread_finish(e, sizeof e) < 0 ||
        group_on_every_thread(g, privs_thread_finish, e, sizeof e) < 0) {
        snprintf(err, errlen, "dropping privileges: %s", e);
        return -1;
    }
    log_info("running as user %s (uid %u), group %s (gid %u) with CAP_NET_ADMIN and "
             "CAP_NET_BIND_SERVICE only", t->user, (unsigned)t->uid, t->group,
             (unsigned)t->gid);
    return 0;
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

static int run(const char *path, const char *takeover)
{
    struct config *cfg = load_or_report(path, 0);
    if (!cfg)
        return 1;
    struct cfg_errors warns = {0};
    if (preflight_report(cfg, PREFLIGHT_START, token_check, &warns) < 0) {
        config_free(cfg);
        return 1;
    }
    log_set_level(cfg->log.level);
    int lr = log_open(cfg->log.file);
    const char *lpath = cfg->log.file;
    if (lr == 0) {
        lr = log_access_open(cfg->log.access_log, cfg->log.access_log_json);
        lpath = cfg->log.access_log;
    }
    if (lr < 0) {
        fprintf(stderr, "twlb: cannot open log file %s: %s\n", lpath, log_open_strerror(lr));
        config_free(cfg);
        cfg_errors_free(&warns);
        return 1;
    }
    for (size_t i = 0; i < warns.n; i++)
        log_warn("%s", warns.msg[i]);
    cfg_errors_free(&warns);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    struct takeover_client tk = {.fd = -1};
    char err[512] = "", token[ADMIN_TOKEN_MAX];
    if (takeover) {
        if (takeover_connect(takeover, &tk, err, sizeof err) < 0) {
            fprintf(stderr, "twlb: %s\n", err);
            config_free(cfg);
            return 1;
        }
        if (cfg->workers != tk.nworkers)
            log_info("takeover: %u workers, as pid %d runs (one per listening socket)",
                     tk.nworkers, (int)tk.old_pid);
        cfg->workers = tk.nworkers; /* every socket moves, one to one */
        state_takeover_grace(tk.drain_ms); /* the old one's drain: its ports' longest hold */
    }

    struct app app;
    memset(&app, 0, sizeof app);
    the_app = &app;
    uv_loop_init(&app.loop);
    app.path = path;
    int rc = 0;
    struct privs_target who;
    if (lookup_user(cfg, &who, err, sizeof err) < 0 ||
        admin_prepare(&app, cfg, NULL, NULL, &app.admin, token, err, sizeof err) < 0 ||
        !(app.g = group_start(&app.loop, cfg, err, sizeof err)) ||
        (cfg->user && drop_privileges(app.g, &who, err, sizeof err) < 0)) {
        fprintf(stderr, "twlb: %s\n", err);
        listener_inherit_close_rest();
        takeover_abandon(&tk); /* the old process serves on */
        if (app.g)
            group_stop(app.g);
        app.g = NULL;
        if (app.admin)
            admin_close(app.admin);
        rc = 1;
    } else {
        if (app.admin)
            admin_set_token(app.admin, token);
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
        uv_signal_init(&app.loop, &app.sigusr2);
        app.sigusr2.data = &app;
        uv_signal_start(&app.sigusr2, on_upgrade_signal, SIGUSR2);
        size_t unused = listener_inherit_close_rest();
        if (unused)
            log_info("takeover: closed %zu listening sockets no listener here uses", unused);
        if (tk.fd >= 0) {
            if (takeover_ready(&tk) < 0)
                log_warn("takeover: cannot tell pid %d that this one serves", (int)tk.old_pid);
            else
                log_info("takeover: serving; pid %d drains", (int)tk.old_pid);
            takeover_abandon(&tk);
            sdnotify_mainpid();
        }
        const struct takeover_hooks hooks = {upgrade_group, upgrade_handed, upgrade_handover,
                                             &app};
        if (cfg->upgrade_socket &&
            takeover_serve(&app.loop, cfg->upgrade_socket, &hooks, &app.upgrade, err,
                           sizeof err) < 0)
            log_error("%s: upgrades through it are not possible", err);
        log_info("twlb %s running with %s", TWLB_VERSION, path);
        app.life = lifecycle_new(&app.loop, admin_view, &app);
        lifecycle_ready(app.life);
    }
    config_free(cfg); /* the workers hold their own references */
    uv_run(&app.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&app.loop) != 0)
        log_warn("event loop closed with handles still open");
    if (app.stopping && statefile_save_failures() > app.save_failures) {
        log_error("exiting with status 1: the state file could not be saved");
        rc = 1;
    }
    log_close();
    return rc;
}

/* Check <path>: every error on stderr (exit 1), or "configuration ok" (exit 0). */
static int check(const char *path)
{
    struct config *cfg = load_or_report(path, 0);
    if (!cfg)
        return 1;
    char err[512];
    struct privs_target who;
    if (lookup_user(cfg, &who, err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        config_free(cfg);
        return 1;
    }
    if (preflight_report(cfg, PREFLIGHT_CHECK, token_check, NULL) < 0) {
        config_free(cfg);
        return 1;
    }
    printf("configuration ok\n");
    config_free(cfg);
    return 0;
}

static const struct option options[] = {
    {"config", required_argument, NULL, 'c'},
    {"check", optional_argument, NULL, 't'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {"takeover", required_argument, NULL, 'X'},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "simulate"))
        return simulate_main(argc - 1, argv + 1);
    if (!strchr(argv[0], '/') || !realpath(argv[0], self_exe)) { /* by PATH: the kernel's */
        ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
        self_exe[n > 0 ? n : 0] = 0;
        char *del = strstr(self_exe, " (deleted)"); /* replaced by a package upgrade */
        if (del && !del[10])
            *del = 0;
    }
    const char *path = NULL, *check_path = NULL, *takeover = NULL;
    int checking = 0, c;
    opterr = 0; /* our own messages, naming the option */
    while ((c = getopt_long(argc, argv, ":c:thV", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (path) {
                fprintf(stderr, "twlb: -c/--config given twice\n");
                return usage_error();
            }
            path = optarg;
            break;
        case 't':
            checking = 1;
            if (optarg)
                check_path = optarg; /* --check=FILE */
            break;
        case 'X':
            takeover = optarg;
            break;
        case 'V':
            printf("twlb %s\n", TWLB_VERSION);
            return 0;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case ':':
            fprintf(stderr, "twlb: %s needs a value\n", argv[optind - 1]);
            return usage_error();
        default:
            if (optopt == 'V' || optopt == 'h') /* --version=x, --help=x */
                fprintf(stderr, "twlb: %s takes no value\n", argv[optind - 1]);
            else if (optopt)
                fprintf(stderr, "twlb: unknown option -%c\n", optopt);
            else
                fprintf(stderr, "twlb: unknown option %s\n", argv[optind - 1]);
            return usage_error();
        }
    }
    /* nginx style "-t -c FILE", or the file as the one argument of -t / --check */
    if (checking && !check_path && !path && optind < argc)
        check_path = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "twlb: unexpected argument %s\n", argv[optind]);
        return usage_error();
    }
    if (check_path && path && strcmp(check_path, path)) {
        fprintf(stderr, "twlb: two files to check: %s and %s\n", check_path, path);
        return usage_error();
    }
    if (checking) {
        if (!check_path && !path) {
            fprintf(stderr, "twlb: -t/--check needs a file (-t FILE, -t -c FILE, --check=FILE)\n");
            return usage_error();
        }
        return check(check_path ? check_path : path);
    }
    if (!path) {
        fprintf(stderr, "twlb: no configuration: give -c FILE\n");
        return usage_error();
    }
    if (takeover && checking) {
        fprintf(stderr, "twlb: --takeover runs the balancer; it does not go with -t\n");
        return usage_error();
    }
    return run(path, takeover);
}
