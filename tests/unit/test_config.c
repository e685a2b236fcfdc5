/* Unit tests for lb/config: small config files written to a temp dir are loaded; the
 * defaults must come from the key tables, bounds and unknown keys give their exact
 * errors, config_unreloadable_changes() names what a reload does not apply, and
 * docs/configuration.md documents every key of the tables with its default. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config/keys.h"

static char dir[64];
static char file[128];

static int group_setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/twlb-test-config-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(file, sizeof file, "%s/c.json", dir);
    return 0;
}

static int group_teardown(void **state)
{
    unlink(file);
    rmdir(dir);
    return 0;
}

/* What the next configs write at the end of the listener object (", ..." or ""). */
static const char *listener_extra = "";

/* The smallest valid config, with <pool_extra> inside the pool object (before
 * "inside") and <top_extra> at the end of the top-level object.  Line 2 is the pool. */
static void write_config(const char *pool_extra, const char *top_extra)
{
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"listeners\": [{\"name\": \"l\", \"bind\": \"127.0.0.1:18080\", \"pool\": \"p\"%s}],\n"
            "\"pools\": [{\"name\": \"p\", %s\"inside\": [\"127.0.0.2\"], "
            "\"backends\": [{\"name\": \"b\", \"address\": \"127.0.1.1:9001\"}]}]%s\n}\n",
            listener_extra, pool_extra, top_extra);
    fclose(f);
}

static struct config *load_ok(const char *pool_extra, const char *top_extra)
{
    write_config(pool_extra, top_extra);
    struct cfg_errors errs = {0};
    struct config *c = config_load(file, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "unexpected: %s\n", errs.msg[i]);
    assert_int_equal(errs.n, 0);
    assert_non_null(c);
    cfg_errors_free(&errs);
    return c;
}

/* Where <needle> first is in the file: "LINE:COL" as error messages give it. */
static void pos_of(const char *needle, char *out, size_t len)
{
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    const char *at = strstr(text, needle);
    assert_non_null(at);
    int line = 1, col = 1;
    for (const char *p = text; p < at; p++, col++)
        if (*p == '\n') {
            line++;
            col = 0;
        }
    snprintf(out, len, "%d:%d", line, col);
}

/* Loading must fail with exactly one error: "FILE:LINE:COL: <want>", the position being
 * that of <needle> (the bad value) in the file. */
static void load_fails(const char *pool_extra, const char *top_extra, const char *needle,
                       const char *want)
{
    write_config(pool_extra, top_extra);
    struct cfg_errors errs = {0};
    assert_null(config_load(file, &errs));
    char pos[32], full[1024];
    pos_of(needle, pos, sizeof pos);
    snprintf(full, sizeof full, "%s:%s: %s", file, pos, want);
    if (errs.n != 1 || strcmp(errs.msg[0], full))
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "got: %s\nwant: %s\n", errs.msg[i], full);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msg[0], full);
    cfg_errors_free(&errs);
}

static void test_tables_are_consistent(void **state)
{
    for (size_t t = 0; t < keys_all_n; t++) {
        const struct key_table *kt = keys_all[t];
        assert_true(kt->n > 0);
        for (size_t i = 0; i < kt->n; i++) {
            const struct key *k = &kt->keys[i];
            assert_ptr_equal(keys_find(kt, k->name), k); /* names are unique */
            if (k->store == KS_U32 && k->type == KT_INT_OR_AUTO) {
                assert_int_equal(k->dint, 0); /* the default is "auto" */
                assert_string_equal(k->def, "auto");
            } else if (k->store == KS_U32) {
                assert_int_equal(k->type, KT_INT);
                assert_true(k->min <= k->dint && k->dint <= k->max);
                assert_int_equal(k->size, sizeof(uint32_t));
            }
            if (k->type == KT_OBJ || k->type == KT_ARR)
                assert_int_equal(k->store, KS_NONE);
        }
    }
    assert_int_equal(keys_find(&keys_pool, "retries")->max, CFG_RETRIES_MAX);
}

static void test_defaults_come_from_the_tables(void **state)
{
    struct config *c = load_ok("", "");
    assert_int_equal(c->drain_timeout_ms, keys_find(&keys_top, "drain_timeout_ms")->dint);
    assert_int_equal(c->drain_timeout_ms, 10000);
    assert_int_equal(c->listeners[0].backlog, 511);
    const struct cfg_pool *p = &c->pools[0];
    assert_int_equal(p->balance, BAL_ROUND_ROBIN);
    assert_int_equal(p->port_lo, 20000);
    assert_int_equal(p->port_hi, 29999);
    assert_int_equal(p->connect_timeout_ms, 2000);
    assert_int_equal(p->idle_timeout_ms, 60000);
    assert_int_equal(p->retries, 2);
    assert_int_equal(p->buffer_bytes, 65536);
    assert_int_equal(p->time_wait.rule, TWRULE_BSD);
    assert_int_equal(p->time_wait.seconds, 60);
    assert_int_equal(p->health.enabled, 0);
    const struct cfg_backend *b = &p->backends[0];
    assert_int_equal(b->weight, 1);
    assert_int_equal(b->proxy_protocol, PROXY_NONE);
    assert_int_equal(b->time_wait.rule, TWRULE_BSD);
    assert_int_equal(b->time_wait.seconds, 60);
    assert_int_equal(c->reuse.isn, ISN_AUTO);
    assert_int_equal(c->reuse.local_time_wait, PM_LOCAL_TW_AVOID);
    assert_int_equal(c->reuse.local_time_wait_seconds, 60);
    assert_int_equal(c->reuse.quarantine_ms, 1000);
    assert_int_equal(c->reuse.kernel_margin_us, ISN_KERNEL_MARGIN_US);
    /* No state_file: next to the configuration (no $STATE_DIRECTORY here). */
    char want[160];
    snprintf(want, sizeof want, "%s.state", file);
    assert_string_equal(c->reuse.state_file, want);
    assert_int_equal(c->reuse.state_file_default, 1);
    assert_int_equal(c->admin.enabled, 0);
    assert_int_equal(c->log.level, LOGL_INFO);
    assert_null(c->log.file);
    assert_null(c->log.access_log);
    assert_int_equal(c->log.access_log_json, 0);
    config_free(c);

    /* Present but empty objects get their own defaults. */
    c = load_ok("\"health\": {}, ", ", \"admin\": {}");
    assert_int_equal(c->admin.enabled, 1);
    assert_string_equal(c->admin.bind.text, "127.0.0.1:9901");
    const struct cfg_health *h = &c->pools[0].health;
    assert_int_equal(h->enabled, 1);
    assert_int_equal(h->interval_ms, 2000);
    assert_int_equal(h->timeout_ms, 1000);
    assert_int_equal(h->rise, 2);
    assert_int_equal(h->fall, 3);
    assert_int_equal(c->pools[0].backends[0].health.enabled, 1); /* inherited */
    assert_int_equal(c->pools[0].backends[0].health.fall, 3);
    config_free(c);
}

static void test_values_are_stored(void **state)
{
    struct config *c = load_ok("\"retries\": 100, \"source_ports\": \"3000-3009\", "
                               "\"balance\": \"maglev\", \"time_wait\": {\"seconds\": 30}, ",
                               ", \"log\": {\"level\": \"debug\", \"access_log_format\": \"json\"}");
    assert_int_equal(c->pools[0].retries, CFG_RETRIES_MAX);
    assert_int_equal(c->pools[0].port_lo, 3000);
    assert_int_equal(c->pools[0].port_hi, 3009);
    assert_int_equal(c->pools[0].balance, BAL_MAGLEV);
    assert_int_equal(c->pools[0].backends[0].time_wait.seconds, 30);
    assert_int_equal(c->pools[0].backends[0].time_wait.rule, TWRULE_BSD);
    assert_int_equal(c->log.level, LOGL_DEBUG);
    assert_int_equal(c->log.access_log_json, 1);
    config_free(c);
}

/* reuse.state_file: absent is a default path ($STATE_DIRECTORY/state under systemd, else
 * next to the configuration); null is none; a path is that path; "" is an error. */
static void test_state_file_default_and_opt_out(void **state)
{
    setenv("STATE_DIRECTORY", "/var/lib/twlb:/var/lib/other", 1);
    struct config *c = load_ok("", "");
    assert_string_equal(c->reuse.state_file, "/var/lib/twlb/state");
    assert_int_equal(c->reuse.state_file_default, 1);
    config_free(c);
    c = load_ok("", ", \"reuse\": {\"isn\": \"off\"}");
    assert_string_equal(c->reuse.state_file, "/var/lib/twlb/state");
    config_free(c);
    unsetenv("STATE_DIRECTORY");
    c = load_ok("", ", \"reuse\": {\"state_file\": null}");
    assert_null(c->reuse.state_file);
    assert_int_equal(c->reuse.state_file_default, 0);
    config_free(c);
    c = load_ok("", ", \"reuse\": {\"state_file\": \"/srv/s\"}");
    assert_string_equal(c->reuse.state_file, "/srv/s");
    assert_int_equal(c->reuse.state_file_default, 0);
    config_free(c);
    load_fails("", ", \"reuse\": {\"state_file\": \"\"}", "\"\"}",
               "reuse.state_file: is empty (expected a file path, or null for none)");
    load_fails("", ", \"reuse\": {\"state_file\": 7}", "7}",
               "reuse.state_file: 7 is not a string or null");
    /* A changed path takes effect at the next restart: the file is mapped at start. */
    struct config *old = load_ok("", ", \"reuse\": {\"state_file\": \"/srv/a\"}");
    c = load_ok("", ", \"reuse\": {\"state_file\": null}");
    struct cfg_errors out = {0};
    assert_int_equal(config_unreloadable_changes(old, c, &out), 1);
    assert_string_equal(out.msg[0], "reuse.state_file: changed; takes effect at the next restart");
    cfg_errors_free(&out);
    config_free(c);
    config_free(old);
}

static void test_bounds_give_the_exact_error(void **state)
{
    load_fails("\"retries\": 101, ", "", "101",
               "pools[0].retries: 101 is out of range 0..100");
    load_fails("\"buffer_bytes\": 4095, ", "", "4095",
               "pools[0].buffer_bytes: 4095 is out of range 4096..16777216");
    load_fails("\"source_ports\": \"9-8\", ", "", "\"9-8\"",
               "pools[0].source_ports: \"9-8\" starts above its end (expected LO <= HI)");
    load_fails("\"health\": {\"expect\": \"\"}, ", "", "\"\"}",
               "pools[0].health.expect: must be 1 to 256 bytes");
    load_fails("", ", \"drain_timeout_ms\": -1", "-1",
               "drain_timeout_ms: -1 is out of range 0..3600000");
}

/* Load <text> as the file; returns the config (NULL on errors, then in <errs>). */
static struct config *load_text(const char *text, struct cfg_errors *errs)
{
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return config_load(file, errs);
}

#define SLOW_START_POOL(balance)                                                            \
    "{\"listeners\": [{\"name\": \"l\", \"bind\": \"127.0.0.1:18080\", \"pool\": \"p\"}],\n"       \
    "\"pools\": [{\"name\": \"p\", \"balance\": \"" balance "\", \"inside\": [\"127.0.0.2\"],\n"  \
    "\"slow_start_ms\": 3000, \"backends\": [\n"                                                \
    "{\"name\": \"b1\", \"address\": \"127.0.1.1:9001\"},\n"                                    \
    "{\"name\": \"b2\", \"address\": \"127.0.1.2:9001\", \"slow_start_ms\": 500},\n"            \
    "{\"name\": \"b3\", \"address\": \"127.0.1.3:9001\", \"backup\": true, \"slow_start_ms\": 0}\n" \
    "]}]}\n"

static void test_slow_start_inherited_and_backup(void **state)
{
    struct cfg_errors errs = {0};
    struct config *c = load_text(SLOW_START_POOL("least_conn"), &errs);
    assert_int_equal(errs.n, 0);
    assert_non_null(c);
    const struct cfg_pool *p = &c->pools[0];
    assert_int_equal(p->slow_start_ms, 3000);
    assert_int_equal(p->backends[0].slow_start_ms, 3000); /* the pool's */
    assert_int_equal(p->backends[1].slow_start_ms, 500);
    assert_int_equal(p->backends[2].slow_start_ms, 0);    /* set to none */
    assert_false(p->backends[0].backup);
    assert_false(p->backends[1].backup);
    assert_true(p->backends[2].backup);
    config_free(c);
    /* maglev cannot slow-start: one error where it is written (the pool's), one for
     * b2's own, none for b1 (inherited) or b3 (0) */
    assert_null(load_text(SLOW_START_POOL("maglev"), &errs));
    assert_int_equal(errs.n, 2);
    assert_non_null(strstr(errs.msg[0], ":3:18: pools[0].slow_start_ms: 3000 has no effect with "
                                        "balance \"maglev\""));
    assert_non_null(strstr(errs.msg[1], ":5:62: pools[0].backends[1].slow_start_ms: 500 has "
                                        "no effect"));
    cfg_errors_free(&errs);
    /* out of range: the bound, not the maglev rule */
    load_fails("\"slow_start_ms\": 3600001, ", "", "3600001",
               "pools[0].slow_start_ms: 3600001 is out of range 0..3600000");
}

static void test_unknown_keys_are_rejected(void **state)
{
    load_fails("\"retry\": 1, ", "", "1, \"inside\"",
               "pools[0].retry: unknown key (expected one of: name, balance, inside, "
               "source_ports, connect_timeout_ms, idle_timeout_ms, retries, buffer_bytes, "
               "splice, time_wait, health, queue, slow_start_ms, backends)");
    load_fails("", ", \"log\": {\"colour\": true}", "true",
               "log.colour: unknown key (expected one of: level, file, access_log, "
               "access_log_format)");
    load_fails("\"retries\": \"2\", ", "", "\"2\"",
               "pools[0].retries: \"2\" is not an integer");
    load_fails("\"splice\": \"always\", ", "", "\"always\"",
               "pools[0].splice: \"always\" is not a splice mode (expected auto or off)");
}

static void test_unreloadable_changes(void **state)
{
    struct config *old = load_ok("", ", \"workers\": 2, \"user\": \"nobody\"");
    struct config *same = load_ok("", ", \"workers\": 2, \"user\": \"nobody\"");
    struct cfg_errors out = {0};
    assert_int_equal(config_unreloadable_changes(old, same, &out), 0);
    assert_int_equal(out.n, 0);

    /* Reloadable keys may change freely; the log files too since issue 11. */
    struct config *neu = load_ok("\"retries\": 5, \"time_wait\": {\"seconds\": 9}, ",
                                 ", \"workers\": 2, \"user\": \"nobody\", \"log\": "
                                 "{\"file\": \"/tmp/b.log\", \"access_log\": \"-\", "
                                 "\"access_log_format\": \"json\", \"level\": \"warn\"}");
    assert_int_equal(config_unreloadable_changes(old, neu, &out), 0);
    config_free(neu);

    neu = load_ok("", ", \"workers\": 3, \"user\": \"root\", \"group\": \"root\"");
    assert_int_equal(config_unreloadable_changes(old, neu, &out), 3);
    assert_int_equal(out.n, 3);
    assert_string_equal(out.msg[0], "workers: changed; takes effect at the next restart");
    assert_string_equal(out.msg[1], "user: changed; takes effect at the next restart");
    assert_string_equal(out.msg[2], "group: changed; takes effect at the next restart");
    cfg_errors_free(&out);

    /* Removing a key is a change too. */
    config_free(neu);
    neu = load_ok("", ", \"workers\": 2");
    assert_int_equal(config_unreloadable_changes(old, neu, &out), 1);
    assert_string_equal(out.msg[0], "user: changed; takes effect at the next restart");
    cfg_errors_free(&out);
    config_free(neu);
    config_free(same);
    config_free(old);
}

/* The client ACL and the per-client limits of a listener: stored, defaulted, and every
 * mistake named by its JSON path (listeners[0].allow[2]) and position. */
static void test_listener_client_keys(void **state)
{
    struct config *c = load_ok("", "");
    const struct cfg_listener *l = &c->listeners[0];
    assert_int_equal(l->n_allow, 0);
    assert_int_equal(l->n_deny, 0);
    assert_int_equal(l->max_conns_per_client, 0);
    assert_int_equal(l->rate_per_client, 0);
    assert_int_equal(l->burst_per_client, 0);
    config_free(c);

    listener_extra = ", \"allow\": [\"198.18.0.0/15\", \"::1\", \"::ffff:127.0.0.0/104\"], "
                     "\"deny\": [\"0.0.0.0/0\"], \"max_connections_per_client\": 4, "
                     "\"rate_per_client\": 20";
    c = load_ok("", "");
    l = &c->listeners[0];
    assert_int_equal(l->n_allow, 3);
    assert_int_equal(l->allow[0].family, CIDR_INET);
    assert_int_equal(l->allow[0].len, 15);
    assert_int_equal(l->allow[1].family, CIDR_INET6);
    assert_int_equal(l->allow[1].len, 128);
    assert_int_equal(l->allow[2].family, CIDR_INET); /* IPv4-mapped: 127.0.0.0/8 */
    assert_int_equal(l->allow[2].len, 8);
    assert_int_equal(l->n_deny, 1);
    assert_int_equal(l->deny[0].len, 0);
    assert_int_equal(l->max_conns_per_client, 4);
    assert_int_equal(l->rate_per_client, 20);
    assert_int_equal(l->burst_per_client, 20); /* the burst defaults to the rate */
    config_free(c);
    listener_extra = ", \"rate_per_client\": 20, \"burst_per_client\": 1";
    c = load_ok("", "");
    assert_int_equal(c->listeners[0].burst_per_client, 1);
    config_free(c);

    listener_extra = ", \"allow\": [\"198.18.0.0/15\", \"::1\", \"198.18.0.1/15\"]";
    load_fails("", "", "\"198.18.0.1/15\"",
               "listeners[0].allow[2]: \"198.18.0.1/15\" has bits set past its prefix length "
               "(the prefix is \"198.18.0.0/15\"; write that, or the address alone for one host)");
    listener_extra = ", \"deny\": [\"::1/127\"]";
    load_fails("", "", "\"::1/127\"",
               "listeners[0].deny[0]: \"::1/127\" has bits set past its prefix length "
               "(the prefix is \"::/127\"; write that, or the address alone for one host)");
    listener_extra = ", \"deny\": [\"10.0.0.0/8\", \"10.0.0.300\"]";
    load_fails("", "", "\"10.0.0.300\"",
               "listeners[0].deny[1]: \"10.0.0.300\" is not an IPv4 or IPv6 prefix (expected "
               "ADDRESS or ADDRESS/LENGTH, e.g. 198.18.0.0/15 or ::1/128)");
    listener_extra = ", \"allow\": [\"::/129\"]";
    load_fails("", "", "\"::/129\"",
               "listeners[0].allow[0]: \"::/129\" has a prefix length above 128 (the most for "
               "IPv6)");
    listener_extra = ", \"allow\": [8]";
    load_fails("", "", "8]", "listeners[0].allow[0]: 8 is not a string");
    listener_extra = ", \"allow\": []";
    load_fails("", "", "[]",
               "listeners[0].allow: is empty (expected at least one prefix; leave the key out "
               "for no list)");
    listener_extra = ", \"deny\": \"10.0.0.0/8\"";
    load_fails("", "", "\"10.0.0.0/8\"",
               "listeners[0].deny: \"10.0.0.0/8\" is not an array");
    listener_extra = ", \"burst_per_client\": 5";
    load_fails("", "", "5}",
               "listeners[0].burst_per_client: 5 needs rate_per_client (a burst of new "
               "connections is only limited with a rate)");
    listener_extra = ", \"rate_per_client\": 1000001";
    load_fails("", "", "1000001",
               "listeners[0].rate_per_client: 1000001 is out of range 0..1000000");
    listener_extra = "";
}

/* A word key's list (the schema's enum) is exactly what its parser accepts: every word
 * parses, to a value of its own; a word that is not listed does not; and the error
 * message names the same words. */
static void test_words_are_what_parse_accepts(void **state)
{
    int seen = 0;
    for (size_t t = 0; t < keys_all_n; t++)
        for (size_t i = 0; i < keys_all[t]->n; i++) {
            const struct key *k = &keys_all[t]->keys[i];
            if (k->store != KS_PARSE || !k->words)
                continue;
            seen++;
            unsigned char vals[16][64];
            size_t n = 0;
            int has_default = 0;
            assert_true(k->size <= sizeof vals[0]);
            for (; k->words[n]; n++) {
                const char *why = NULL;
                assert_true(n < 16);
                memset(vals[n], 0xa5, sizeof vals[n]);
                if (k->parse(k->words[n], vals[n], &why) != 0)
                    fail_msg("%s: word \"%s\" does not parse", k->name, k->words[n]);
                for (size_t j = 0; j < n; j++)
                    if (!memcmp(vals[j], vals[n], k->size))
                        fail_msg("%s: \"%s\" and \"%s\" parse alike", k->name, k->words[j],
                                 k->words[n]);
                has_default |= k->def && !strcmp(k->def, k->words[n]);
            }
            assert_true(has_default);
            /* The message lists the words as "(expected a, b or c)", in any order. */
            const char *why = NULL;
            unsigned char junk[64];
            assert_int_equal(k->parse("no-such-word", junk, &why), -1);
            const char *list = strstr(why, "(expected ");
            assert_non_null(list);
            char buf[256];
            snprintf(buf, sizeof buf, "%s", list + strlen("(expected "));
            size_t named = 0;
            for (char *w = strtok(buf, " ,)"); w; w = strtok(NULL, " ,)")) {
                if (!strcmp(w, "or"))
                    continue;
                size_t j = 0;
                while (k->words[j] && strcmp(k->words[j], w))
                    j++;
                if (!k->words[j])
                    fail_msg("%s: the error names \"%s\", which is not in its words", k->name, w);
                named++;
            }
            assert_int_equal(named, n);
        }
    assert_int_equal(seen, 8); /* balance, proxy_protocol, rule, isn, local_time_wait, level,
                                  access_log_format, splice */
}

/* docs/configuration.md: a "## " heading per table, holding a row "| `KEY` | ... |
 * DEFAULT | ... |" per key whose default cell shows the table's default. */
static char *read_doc(void)
{
    FILE *f = fopen("docs/configuration.md", "r");
    assert_non_null(f);
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void test_doc_lists_every_key_with_its_default(void **state)
{
    const char *doc = read_doc();
    for (size_t t = 0; t < keys_all_n; t++) {
        const struct key_table *kt = keys_all[t];
        char head[128];
        if (*kt->name)
            snprintf(head, sizeof head, "\n## `%s`", kt->name);
        else
            snprintf(head, sizeof head, "\n## Top level");
        const char *sec = strstr(doc, head);
        if (!sec)
            fail_msg("docs/configuration.md has no section \"%s\"", head + 1);
        const char *end = strstr(doc + (sec - doc) + strlen(head), "\n## ");
        size_t seclen = end ? (size_t)(end - sec) : strlen(sec);
        for (size_t i = 0; i < kt->n; i++) {
            const struct key *k = &kt->keys[i];
            char row[128];
            snprintf(row, sizeof row, "\n| `%s` |", k->name);
            const char *r = strstr(sec, row);
            if (!r || (size_t)(r - sec) > seclen)
                fail_msg("docs/configuration.md, %s: no row for `%s`", head + 1, k->name);
            /* The third cell is the default. */
            const char *cell = r + 1;
            for (int bar = 0; bar < 2; bar++) {
                cell = strchr(cell + 1, '|');
                assert_non_null(cell);
            }
            const char *cell_end = strchr(cell + 1, '|');
            assert_non_null(cell_end);
            char def[64] = "";
            if (k->store == KS_U32 && !k->def)
                snprintf(def, sizeof def, "%lld", k->dint);
            else if (k->def)
                snprintf(def, sizeof def, "%s", k->def);
            if (!*def)
                continue;
            char got[256];
            snprintf(got, sizeof got, "%.*s", (int)(cell_end - cell - 1), cell + 1);
            if (!strstr(got, def))
                fail_msg("docs/configuration.md, %s: `%s` default is \"%s\", the doc says \"%s\"",
                         head + 1, k->name, def, got);
        }
    }
}

/* The doc's Reload section names every key a reload does not apply. */
static void test_doc_names_the_unreloadable_keys(void **state)
{
    const char *sec = strstr(read_doc(), "\n## Reload");
    assert_non_null(sec);
    for (size_t t = 0; t < keys_all_n; t++)
        for (size_t i = 0; i < keys_all[t]->n; i++) {
            const struct key *k = &keys_all[t]->keys[i];
            if (k->reloadable)
                continue;
            char name[128];
            snprintf(name, sizeof name, "`%s%s%s`", keys_all[t]->name,
                     *keys_all[t]->name ? "." : "", k->name);
            if (!strstr(sec, name))
                fail_msg("docs/configuration.md, ## Reload: %s is not reloadable but not named",
                         name);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_are_consistent),
        cmocka_unit_test(test_defaults_come_from_the_tables),
        cmocka_unit_test(test_values_are_stored),
        cmocka_unit_test(test_state_file_default_and_opt_out),
        cmocka_unit_test(test_bounds_give_the_exact_error),
        cmocka_unit_test(test_unknown_keys_are_rejected),
        cmocka_unit_test(test_slow_start_inherited_and_backup),
        cmocka_unit_test(test_words_are_what_parse_accepts),
        cmocka_unit_test(test_unreloadable_changes),
        cmocka_unit_test(test_listener_client_keys),
        cmocka_unit_test(test_doc_lists_every_key_with_its_default),
        cmocka_unit_test(test_doc_names_the_unreloadable_keys),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
