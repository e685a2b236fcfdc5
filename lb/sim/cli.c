/* cli.c - see cli.h.  The model (sim/model.c) knows nothing of files: the per-second
 * CSV rows and the SVG are written here, from the result. */
#include "sim/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "sim/model.h"
#include "sim/svg.h"

/* One row per virtual second: what began in it, and the ports at its end. */
static int write_csv(FILE *f, const struct sim_params *p, const struct sim_result *r)
{
    fprintf(f, "t,attempted,accepted,stalled,failed,free,busy,remote_time_wait,"
               "local_time_wait,quarantined\n");
    for (uint32_t i = 0; i < p->duration_s; i++) {
        const struct sim_second *sec = &r->per_second[i];
        fprintf(f, "%llu,%u,%u,%u,%u,%u,%u,%u,%u,%u\n", (unsigned long long)i + 1,
                sec->attempted, sec->accepted, sec->stalled, sec->failed, sec->ports[0],
                sec->ports[1], sec->ports[2], sec->ports[3], sec->ports[4]);
    }
    return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: twlb simulate -c FILE --rate R --duration SECONDS [--pool NAME]\n"
            "         [--profile linux|freebsd|windows|strict|custom:RULE:SECONDS]\n"
            "         [--policy twlb-explicit|twlb-kernel|twlb-off|naive]\n"
            "         [--hold-ms N] [--upload-bytes N] [--closer backend|proxy]\n"
            "         [--csv FILE] [--svg FILE] [--json]\n");
    return 2;
}

int simulate_main(int argc, char **argv)
{
    const char *cfgpath = NULL, *pool = NULL, *profile = NULL, *policy = NULL;
    const char *csv = NULL, *svg = NULL;
    double rate = 0;
    long duration = 0;
    struct sim_params p = {.hold_ms = 10, .upload_bytes = 100, .closer_backend = 1};
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!v)
            return usage();
        i++;
        if (!strcmp(a, "-c")) cfgpath = v;
        else if (!strcmp(a, "--rate")) rate = atof(v);
        else if (!strcmp(a, "--duration")) duration = atol(v);
        else if (!strcmp(a, "--pool")) pool = v;
        else if (!strcmp(a, "--profile")) profile = v;
        else if (!strcmp(a, "--policy")) policy = v;
        else if (!strcmp(a, "--hold-ms")) p.hold_ms = (uint32_t)atol(v);
        else if (!strcmp(a, "--upload-bytes")) p.upload_bytes = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--closer")) {
            if (!strcmp(v, "proxy")) p.closer_backend = 0;
            else if (strcmp(v, "backend")) return usage();
        } else if (!strcmp(a, "--csv")) csv = v;
        else if (!strcmp(a, "--svg")) svg = v;
        else return usage();
    }
    if (!cfgpath || rate <= 0 || duration <= 0 || duration > 86400) {
        fprintf(stderr, "twlb simulate: -c, --rate > 0 and --duration 1..86400 are needed\n");
        return usage();
    }
    struct cfg_errors errs = {0};
    struct config *cfg = config_load(cfgpath, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msg[i]);
        cfg_errors_free(&errs);
        return 1;
    }
    const struct cfg_pool *pc = &cfg->pools[0];
    for (size_t i = 0; pool && i < cfg->n_pools; i++)
        if (!strcmp(cfg->pools[i].name, pool))
            pc = &cfg->pools[i];
    if (pool && strcmp(pc->name, pool)) {
        fprintf(stderr, "twlb simulate: no pool \"%s\" in %s\n", pool, cfgpath);
        config_free(cfg);
        return 1;
    }
    p.rate = rate;
    p.duration_s = (uint32_t)duration;
    p.n_backends = (uint32_t)pc->n_backends;
    p.port_lo = pc->port_lo;
    p.port_hi = pc->port_hi;
    p.connect_timeout_ms = pc->connect_timeout_ms;
    if (profile) {
        if (sim_stack_parse(profile, &p.stack) < 0) {
            fprintf(stderr, "twlb simulate: bad --profile %s\n", profile);
            config_free(cfg);
            return 2;
        }
    } else { /* the first backend's configured rule, conservatively without RST relief */
        p.stack = (struct sim_stack){"config", pc->backends[0].time_wait.rule,
                                     pc->backends[0].time_wait.seconds, 0};
    }
    enum isn_mode m = cfg->reuse.isn;
    p.policy = m == ISN_KERNEL ? SIM_KERNEL : m == ISN_OFF ? SIM_OFF : SIM_EXPLICIT;
    if (policy) {
        if (sim_policy_parse(policy, &p.policy) < 0) {
            fprintf(stderr, "twlb simulate: bad --policy %s\n", policy);
            config_free(cfg);
            return 2;
        }
    }
    FILE *cf = NULL;
    if (csv && !(cf = fopen(csv, "w"))) {
        fprintf(stderr, "twlb simulate: %s: %s\n", csv, strerror(errno));
        config_free(cfg);
        return 1;
    }
    struct sim_result r;
    int rc = sim_run(&p, &r);
    if (cf) {
        if (rc == 0)
            write_csv(cf, &p, &r);
        fclose(cf);
    }
    if (rc < 0) {
        fprintf(stderr, "twlb simulate: out of memory or bad parameters\n");
        config_free(cfg);
        return 1;
    }
    if (svg) {
        FILE *sf = fopen(svg, "w");
        if (!sf || sim_svg_write(sf, &p, &r) < 0 || fclose(sf) != 0)
            fprintf(stderr, "twlb simulate: cannot write %s\n", svg);
    }
    uint32_t ports = (uint32_t)p.port_hi - p.port_lo + 1;
    if (json) {
        printf("{\"policy\": \"%s\", \"profile\": \"%s\", \"rule\": \"%s\", \"time_wait_s\": %u, "
               "\"rate\": %.1f, \"duration_s\": %u, \"backends\": %u, \"ports\": %u, "
               "\"attempted\": %llu, \"accepted\": %llu, \"stalled\": %llu, \"failed\": %llu, "
               "\"sustainable_rate\": %.2f}\n",
               sim_policy_name(p.policy), p.stack.name, twrule_kind_name(p.stack.rule),
               p.stack.tw_seconds, p.rate, p.duration_s, p.n_backends, ports,
               (unsigned long long)r.attempted, (unsigned long long)r.accepted,
               (unsigned long long)r.stalled, (unsigned long long)r.failed, r.sustainable_rate);
    } else {
        printf("policy %s, %s stack (%s rule, %u s TIME_WAIT), %u backend(s), %u source ports\n",
               sim_policy_name(p.policy), p.stack.name, twrule_kind_name(p.stack.rule),
               p.stack.tw_seconds, p.n_backends, ports);
        printf("offered %.0f connections per second for %u s\n", p.rate, p.duration_s);
        printf("attempted %llu  accepted at once %llu  stalled %llu  failed %llu\n",
               (unsigned long long)r.attempted, (unsigned long long)r.accepted,
               (unsigned long long)r.stalled, (unsigned long long)r.failed);
        printf("sustainable rate %.1f connections per second%s\n", r.sustainable_rate,
               r.sustainable_rate + 0.5 >= p.rate ? " (holds the offered rate)" : "");
    }
    free(r.per_second);
    config_free(cfg);
    return 0;
}
