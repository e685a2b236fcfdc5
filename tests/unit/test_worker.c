/* Loop-level tests of lb/runtime/worker.c: a worker started, reloaded and drained leaves
 * no handle behind (uv_loop_close() returns 0), whatever was in flight: health probes
 * connecting to a backend that never answers, a retired generation still closing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "os/clock.h"
#include "config/config.h"
#include "runtime/group.h"
#include "runtime/worker.h"

/* A listening socket nobody accepts from: SYNs are answered by the kernel and the
 * connections stay queued, so probes stay open until their timeout (a blackhole would
 * need a firewall).  Returns the fd; *port gets its port. */
static int quiet_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 0), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static int free_port(void)
{
    int p, fd = quiet_listener(&p);
    close(fd);
    return p;
}

static struct config *load(const char *text)
{
    char path[] = "/tmp/twlb-test-worker-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct cfg_errors errs = {0};
    struct config *c = config_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msg[i]);
    cfg_errors_free(&errs);
    unlink(path);
    assert_non_null(c);
    return c;
}

static struct config *config_for(int listen_port, int backend_port, int probe_ms)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"listeners\": [{\"name\": \"l\", \"bind\": \"127.0.0.1:%d\", \"pool\": \"p\"}],"
             " \"pools\": [{\"name\": \"p\", \"inside\": [\"127.0.0.1\"],"
             "   \"source_ports\": \"40000-40099\","
             "   \"health\": {\"interval_ms\": %d, \"timeout_ms\": %d},"
             "   \"backends\": [{\"name\": \"b\", \"address\": \"127.0.0.1:%d\"}]}],"
             " \"reuse\": {\"isn\": \"off\"}, \"log\": {\"level\": \"error\"},"
             " \"drain_timeout_ms\": 200}",
             listen_port, probe_ms, probe_ms, backend_port);
    return load(text);
}

struct run {
    struct worker *w;
    int drained;
};

static void on_drained(struct worker *w)
{
    struct run *r = w->data;
    r->drained = 1;
    worker_close(w);
}

static void on_step(uv_timer_t *t)
{
    struct run *r = t->data;
    char err[256];
    static int step;
    if (step++ == 0) {
        /* a reload while the first generation's probe is open */
        struct config *c = config_for(r->w->cur->cfg->listeners[0].bind.ss.ss_family == AF_INET
                                          ? ntohs(((struct sockaddr_in *)&r->w->cur->cfg
                                                       ->listeners[0].bind.ss)->sin_port)
                                          : 0,
                                      ntohs(((struct sockaddr_in *)&r->w->cur->cfg->pools[0]
                                                 .backends[0].addr.ss)->sin_port),
                                      50);
        assert_int_equal(worker_reload_prepare(r->w, c, err, sizeof err), 0);
        worker_reload_commit(r->w);
        uv_timer_start(t, on_step, 20, 0);
        return;
    }
    uv_close((uv_handle_t *)t, NULL);
    worker_drain(r->w, on_drained);
}

/* One worker on a new <loop>, started on <c>, with <r> as its data. */
static void start_one(uv_loop_t *loop, struct run *r, struct config *c)
{
    char err[256] = "";
    struct isn_key key = {{1}};
    uv_loop_init(loop);
    r->w = worker_new(loop, 0, 1, &key, err, sizeof err);
    assert_non_null(r->w);
    r->w->data = r;
    if (worker_start(r->w, c, err, sizeof err) != 0)
        fail_msg("worker_start: %s", err);
}

static void test_stop_leaves_no_handle(void **state)
{
    int backend_port, hole = quiet_listener(&backend_port);
    uv_loop_t loop;
    struct run r = {0};
    start_one(&loop, &r, config_for(free_port(), backend_port, 1000));
    uv_timer_t step;
    uv_timer_init(&loop, &step);
    step.data = &r;
    uv_timer_start(&step, on_step, 30, 0);
    worker_run(&loop, r.w); /* returns only when every handle is closed */
    assert_true(r.drained);
    assert_int_equal(uv_loop_close(&loop), 0);
    worker_free(r.w);
    close(hole);
}

/* A prepared reload accepts nobody into its generation before the commit: a listener it
 * takes over still serves the running generation, a new one is not polled (its clients
 * wait in the backlog).  An abort then frees the prepared generation with no session of
 * it anywhere, and a commit starts the new listener. */
static void test_prepared_reload_accepts_nothing_before_commit(void **state)
{
    int backend_port, hole = quiet_listener(&backend_port);
    uv_loop_t loop;
    struct run r = {0};
    int port_a = free_port(), port_b = free_port();
    start_one(&loop, &r, config_for(port_a, backend_port, 1000));
    char err[256] = "";
    char text[2048];
    snprintf(text, sizeof text,
             "{\"listeners\": [{\"name\": \"l\", \"bind\": \"127.0.0.1:%d\", \"pool\": \"p\"},"
             "                {\"name\": \"m\", \"bind\": \"127.0.0.1:%d\", \"pool\": \"p\"}],"
             " \"pools\": [{\"name\": \"p\", \"inside\": [\"127.0.0.1\"],"
             "   \"source_ports\": \"40000-40099\","
             "   \"backends\": [{\"name\": \"b\", \"address\": \"127.0.0.1:%d\"}]}],"
             " \"reuse\": {\"isn\": \"off\", \"state_file\": null},"
             " \"log\": {\"level\": \"error\"}, \"drain_timeout_ms\": 200}",
             port_a, port_b, backend_port);
    for (int commit = 0; commit < 2; commit++) {
        struct gen *running = r.w->cur;
        int rc = worker_reload_prepare(r.w, load(text), err, sizeof err);
        if (rc != 0)
            fail_msg("prepare: %s", err);
        struct listener_rt *kept = r.w->next->listeners[0], *added = r.w->next->listeners[1];
        assert_ptr_equal(kept->gen, running);                 /* still the running one's */
        assert_true(uv_is_active((uv_handle_t *)&kept->poll));
        assert_false(uv_is_active((uv_handle_t *)&added->poll)); /* nobody accepted yet */
        if (!commit) {
            worker_reload_abort(r.w);
            assert_ptr_equal(kept->gen, running);
            uv_run(&loop, UV_RUN_NOWAIT); /* the listener opened for it closes */
            continue;
        }
        worker_reload_commit(r.w);
        assert_ptr_equal(kept->gen, r.w->cur);
        assert_true(uv_is_active((uv_handle_t *)&added->poll));
    }
    worker_drain(r.w, on_drained);
    worker_run(&loop, r.w);
    assert_true(r.drained);
    assert_int_equal(uv_loop_close(&loop), 0);
    worker_free(r.w);
    close(hole);
}

static void test_start_failure_leaves_no_handle(void **state)
{
    int busy_port, busy = quiet_listener(&busy_port); /* the listener cannot bind there */
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256] = "";
    struct isn_key key = {{1}};
    struct worker *w = worker_new(&loop, 0, 1, &key, err, sizeof err);
    assert_non_null(w);
    assert_true(worker_start(w, config_for(busy_port, busy_port, 1000), err, sizeof err) < 0);
    assert_non_null(strstr(err, "cannot listen"));
    worker_close(w);
    worker_run(&loop, w);
    assert_int_equal(uv_loop_close(&loop), 0);
    worker_free(w);
    close(busy);
}

/* The same through the group: two worker threads, a reload, a drain; the main loop and
 * every worker loop end with no handle left (a worker's loop that does not end would
 * hang the join: the alarm below fails the test then). */
static int group_drained;

static void on_group_drained(struct group *g)
{
    group_drained = 1;
    group_stop(g);
}

static void test_group_stop_leaves_no_handle(void **state)
{
    int backend_port, hole = quiet_listener(&backend_port);
    int listen_port = free_port();
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256] = "";
    struct config *c = config_for(listen_port, backend_port, 50);
    c->workers = 2;
    struct group *g = group_start(&loop, c, err, sizeof err);
    assert_non_null(g);
    assert_int_equal(group_size(g), 2);
    const struct view *v = group_view(g);
    assert_non_null(v);
    assert_int_equal(view_workers(v), 2);
    struct config *c2 = config_for(listen_port, backend_port, 50);
    c2->workers = 2;
    assert_int_equal(group_reload(g, c2, err, sizeof err), 0);
    assert_ptr_equal(group_config(g), c2);
    config_free(c2);
    /* a reload that cannot listen changes nothing */
    int busy_port, busy = quiet_listener(&busy_port);
    struct config *bad = config_for(busy_port, backend_port, 50);
    bad->workers = 2;
    assert_true(group_reload(g, bad, err, sizeof err) < 0);
    assert_ptr_not_equal(group_config(g), bad);
    config_free(bad);
    close(busy);
    group_drain(g, on_group_drained);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(group_drained);
    assert_int_equal(uv_loop_close(&loop), 0); /* the state file's keeper too */
    /* the default state file (next to the configuration) was made, and is closed */
    struct stat st;
    assert_int_equal(stat(c->reuse.state_file, &st), 0);
    assert_int_equal(unlink(c->reuse.state_file), 0);
    config_free(c);
    close(hole);
}

/* The state file keeps deadlines on the loop's clock across a restart: uv_now() must be
 * CLOCK_MONOTONIC in milliseconds, one clock for the whole boot (libuv 1.44: uv__hrtime,
 * CLOCK_MONOTONIC or its coarse variant). */
static void test_loop_clock_is_the_boot_wide_monotonic_clock(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_update_time(&loop);
    int64_t d = (int64_t)uv_now(&loop) - (int64_t)(clock_mono_ns() / 1000000);
    assert_true(d > -20 && d < 20);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    alarm(30); /* a handle that keeps the loop alive would hang uv_run: fail instead */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_leaves_no_handle),
        cmocka_unit_test(test_prepared_reload_accepts_nothing_before_commit),
        cmocka_unit_test(test_start_failure_leaves_no_handle),
        cmocka_unit_test(test_group_stop_leaves_no_handle),
        cmocka_unit_test(test_loop_clock_is_the_boot_wide_monotonic_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
