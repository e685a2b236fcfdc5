/* cli.c - see cli.h.  The model (sim/model.c) knows nothing of files: the per-second
 * CSV rows and the SVG are written here, from the result.  The output files are opened
 * before the run, so a path that cannot be written fails at once, not after it. */
#include "sim/cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/numparse.h"
#include "sim/model.h"
#include "sim/svg.h"

static const char usage_text[] =
    "usage: twlb simulate -c FILE (--rate R --duration SECONDS | --target-rate R)\n"
    "         [--pool NAME] [--nodes N] [--inside N] [--max-inside N]\n"
    "         [--profile linux|freebsd|windows|strict|custom:RULE:SECONDS]\n"
    "         [--policy twlb-explicit|twlb-kernel|twlb-off|naive]\n"
    "         [--hold-ms N] [--upload-bytes N] [--closer backend|proxy]\n"
    "         [--csv FILE] [--svg FILE] [--json]\n";

static int usage(void)
{
    fputs(usage_text, stderr);
    return 2;
}

/* What the command line asked for, before the config is read. */
struct cli_args {
    const char *cfgpath, *pool, *profile, *policy, *csv, *svg;
    double rate, target;
    uint64_t duration, hold_ms, upload_bytes, nodes, inside, max_inside;
    int closer_backend, json;
};

enum { OPT_RATE = 256, OPT_DURATION, OPT_POOL, OPT_PROFILE, OPT_POLICY, OPT_HOLD_MS,
       OPT_UPLOAD_BYTES, OPT_CLOSER, OPT_CSV, OPT_SVG, OPT_JSON, OPT_NODES, OPT_INSIDE,
       OPT_TARGET, OPT_MAX_INSIDE };

static const struct option options[] = {
    {"rate", required_argument, NULL, OPT_RATE},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"pool", required_argument, NULL, OPT_POOL},
    {"profile", required_argument, NULL, OPT_PROFILE},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"hold-ms", required_argument, NULL, OPT_HOLD_MS},
    {"upload-bytes", required_argument, NULL, OPT_UPLOAD_BYTES},
    {"closer", required_argument, NULL, OPT_CLOSER},
    {"csv", required_argument, NULL, OPT_CSV},
    {"svg", required_argument, NULL, OPT_SVG},
    {"json", no_argument, NULL, OPT_JSON},
    {"nodes", required_argument, NULL, OPT_NODES},
    {"inside", required_argument, NULL, OPT_INSIDE},
    {"target-rate", required_argument, NULL, OPT_TARGET},
    {"max-inside", required_argument, NULL, OPT_MAX_INSIDE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Fill <a> from argv.  Returns -1 to go on, or the exit status (--help, bad usage). */
static int parse_args(int argc, char **argv, struct cli_args *a)
{
    *a = (struct cli_args){.hold_ms = 10, .upload_bytes = 100, .closer_backend = 1,
                           .nodes = 1, .max_inside = 64};
    opterr = 0; /* our own messages, naming "twlb simulate" */
    int c, li = -1;
    while ((c = getopt_long(argc, argv, ":c:h", options, &li)) != -1) {
        const char *flag = li >= 0 ? options[li].name : NULL;
        int bad = 0;
        uint64_t min = 0, max = 0;
        switch (c) {
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case 'c': a->cfgpath = optarg; break;
        case OPT_POOL: a->pool = optarg; break;
        case OPT_PROFILE: a->profile = optarg; break;
        case OPT_POLICY: a->policy = optarg; break;
        case OPT_CSV: a->csv = optarg; break;
        case OPT_SVG: a->svg = optarg; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_RATE:
            bad = numparse_number(optarg, &a->rate);
            break;
        case OPT_TARGET:
            bad = numparse_number(optarg, &a->target) || !(a->target > 0);
            break;
        case OPT_NODES:
        case OPT_INSIDE:
        case OPT_MAX_INSIDE:
            min = 1;
            max = c == OPT_NODES ? 64 : 256;
            bad = numparse_count(optarg, min, max, c == OPT_NODES ? &a->nodes
                                                : c == OPT_INSIDE ? &a->inside : &a->max_inside);
            break;
        case OPT_DURATION:
            min = 1;
            max = 86400;
            bad = numparse_count(optarg, min, max, &a->duration);
            break;
        case OPT_HOLD_MS:
            max = UINT32_MAX;
            bad = numparse_count(optarg, min, max, &a->hold_ms);
            break;
        case OPT_UPLOAD_BYTES:
            max = UINT64_MAX;
            bad = numparse_count(optarg, min, max, &a->upload_bytes);
            break;
        case OPT_CLOSER:
            if (!strcmp(optarg, "proxy"))
                a->closer_backend = 0;
            else if (strcmp(optarg, "backend"))
                return usage();
            break;
        case ':':
            fprintf(stderr, "twlb simulate: %s needs a value\n", argv[optind - 1]);
            return usage();
        default:
            if (optopt >= 256) /* --json=x */
                fprintf(stderr, "twlb simulate: %s takes no value\n", argv[optind - 1]);
            else if (optopt)
                fprintf(stderr, "twlb simulate: unknown option -%c\n", optopt);
            else
                fprintf(stderr, "twlb simulate: unknown option %s\n", argv[optind - 1]);
            return usage();
        }
        if (bad && (c == OPT_RATE || c == OPT_TARGET)) {
            fprintf(stderr, "twlb simulate: bad --%s %s: want a number\n", flag, optarg);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "twlb simulate: bad --%s %s: want a whole number %llu..%llu\n",
                    flag, optarg, (unsigned long long)min, (unsigned long long)max);
            return 2;
        }
        li = -1;
    }
    if (optind < argc) {
        fprintf(stderr, "twlb simulate: unexpected argument %s\n", argv[optind]);
        return usage();
    }
    if (a->target > 0 && (a->rate > 0 || a->csv || a->svg || a->inside)) {
        fprintf(stderr, "twlb simulate: --target-rate plans: no --rate, --inside, --csv or --svg\n");
        return usage();
    }
    if (!a->cfgpath || (a->target <= 0 && (a->rate <= 0 || a->duration == 0))) {
        fprintf(stderr, "twlb simulate: -c, and --rate > 0 with --duration 1..86400, or "
                        "--target-rate > 0, are needed\n");
        return usage();
    }
    return -1;
}

/* The model's parameters: the pool from <cfg> (every backend with its own weight and
 * TIME_WAIT rule, the pool's balance algorithm and inside addresses), the rest from <a>.
 * <be> receives the backends (the caller frees it; the names point into <cfg>).  Returns
 * -1 to go on, or the exit status. */
static int make_params(const struct cli_args *a, const struct config *cfg,
                       struct sim_params *p, struct sim_backend **be)
{
    const struct cfg_pool *pc = &cfg->pools[0];
    for (size_t i = 0; a->pool && i < cfg->n_pools; i++)
        if (!strcmp(cfg->pools[i].name, a->pool))
            pc = &cfg->pools[i];
    if (a->pool && strcmp(pc->name, a->pool)) {
        fprintf(stderr, "twlb simulate: no pool \"%s\" in %s\n", a->pool, a->cfgpath);
        return 1;
    }
    *p = (struct sim_params){
        .rate = a->rate,
        .duration_s = (uint32_t)a->duration,
        .n_backends = (uint32_t)pc->n_backends,
        .balance = pc->balance,
        .n_nodes = (uint32_t)a->nodes,
        .n_inside = (uint32_t)(a->inside ? a->inside : pc->n_inside),
        .port_lo = pc->port_lo,
        .port_hi = pc->port_hi,
        .hold_ms = (uint32_t)a->hold_ms,
        .upload_bytes = a->upload_bytes,
        .closer_backend = a->closer_backend,
        .connect_timeout_ms = pc->connect_timeout_ms,
    };
    if (a->profile && sim_stack_parse(a->profile, &p->stack) < 0) {
        fprintf(stderr, "twlb simulate: bad --profile %s\n", a->profile);
        return 2;
    }
    if (!(*be = calloc(pc->n_backends, sizeof **be))) {
        fprintf(stderr, "twlb simulate: out of memory\n");
        return 1;
    }
    uint32_t max_tw = 0;
    for (size_t i = 0; i < pc->n_backends; i++) {
        const struct cfg_backend *cb = &pc->backends[i];
        /* --profile: every backend that stack; else each its configured rule,
         * conservatively without RST relief */
        struct sim_stack st = a->profile ? p->stack
                              : (struct sim_stack){"config", cb->time_wait.rule,
                                                   cb->time_wait.seconds, 0};
        (*be)[i] = (struct sim_backend){cb->name, cb->weight ? cb->weight : 1, st};
        if (st.tw_seconds > max_tw)
            max_tw = st.tw_seconds;
    }
    p->backends = *be;
    if (!a->profile)
        p->stack = (*be)[0].stack; /* what the summary names when all are alike */
    if (a->target > 0 && !a->duration) /* two TIME_WAIT periods reach the steady state */
        p->duration_s = 2 * max_tw + 10 > 86400 ? 86400 : 2 * max_tw + 10;
    p->kernel_margin = isn_kernel_margin_of_us(cfg->reuse.kernel_margin_us);
    enum isn_mode m = cfg->reuse.isn;
    p->policy = m == ISN_KERNEL ? SIM_KERNEL : m == ISN_OFF ? SIM_OFF : SIM_EXPLICIT;
    if (a->policy && sim_policy_parse(a->policy, &p->policy) < 0) {
        fprintf(stderr, "twlb simulate: bad --policy %s\n", a->policy);
        return 2;
    }
    return -1;
}

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

/* Open <path> for writing, or say why not. */
static FILE *open_out(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "twlb simulate: %s: %s\n", path, strerror(errno));
    return f;
}

/* Finish an output file: write it (when <ok>), close it.  Returns 0, or -1 said. */
static int close_out(FILE *f, const char *path, int ok)
{
    if (!f)
        return 0;
    int err = ok ? 0 : errno;
    if (fclose(f) != 0 && !err)
        err = errno ? errno : EIO;
    if (!ok || err) {
        fprintf(stderr, "twlb simulate: cannot write %s: %s\n", path, strerror(err ? err : EIO));
        return -1;
    }
    return 0;
}

static void print_summary(const struct sim_params *p, const struct sim_result *r, int json)
{
    uint32_t ports = (uint32_t)p->port_hi - p->port_lo + 1;
    char cap[32] = "null"; /* naive: no formula */
    if (r->capacity >= 0)
        snprintf(cap, sizeof cap, "%.2f", r->capacity);
    if (json) {
        printf("{\"policy\": \"%s\", \"profile\": \"%s\", \"rule\": \"%s\", \"time_wait_s\": %u, "
               "\"rate\": %.1f, \"duration_s\": %u, \"backends\": %u, \"ports\": %u, "
               "\"nodes\": %u, \"inside\": %u, \"balance\": \"%s\", "
               "\"attempted\": %llu, \"accepted\": %llu, \"stalled\": %llu, \"failed\": %llu, "
               "\"sustainable_rate\": %.2f, \"capacity_cps\": %s}\n",
               sim_policy_name(p->policy), p->stack.name, twrule_kind_name(p->stack.rule),
               p->stack.tw_seconds, p->rate, p->duration_s, p->n_backends, ports,
               p->n_nodes, p->n_inside, balance_algo_name(p->balance),
               (unsigned long long)r->attempted, (unsigned long long)r->accepted,
               (unsigned long long)r->stalled, (unsigned long long)r->failed,
               r->sustainable_rate, cap);
        return;
    }
    printf("policy %s, %u node(s) x %u inside address(es) x %u backend(s) (%s), "
           "%u source ports each\n", sim_policy_name(p->policy), p->n_nodes, p->n_inside,
           p->n_backends, balance_algo_name(p->balance), ports);
    for (uint32_t i = 0; i < p->n_backends; i++)
        printf("  backend %s weight %u: %s stack, %s rule, %u s TIME_WAIT\n",
               p->backends[i].name, p->backends[i].weight, p->backends[i].stack.name,
               twrule_kind_name(p->backends[i].stack.rule), p->backends[i].stack.tw_seconds);
    printf("offered %.0f connections per second for %u s\n", p->rate, p->duration_s);
    printf("attempted %llu  accepted at once %llu  stalled %llu  failed %llu\n",
           (unsigned long long)r->attempted, (unsigned long long)r->accepted,
           (unsigned long long)r->stalled, (unsigned long long)r->failed);
    printf("sustainable rate %.1f connections per second%s\n", r->sustainable_rate,
           r->sustainable_rate + 0.5 >= p->rate ? " (holds the offered rate)" : "");
    if (r->capacity >= 0)
        printf("analytic capacity %.1f connections per second (source ports / mean port "
               "cycle, the formula of twlb_port_capacity_cps)\n", r->capacity);
}

static int plan(const struct cli_args *a, const struct sim_params *p);
static int run_once(const struct cli_args *a, const struct sim_params *p);

int simulate_main(int argc, char **argv)
{
    struct cli_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    struct cfg_errors errs = {0};
    struct config *cfg = config_load(a.cfgpath, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msg[i]);
        cfg_errors_free(&errs);
        return 1;
    }
    struct sim_params p;
    struct sim_backend *be = NULL;
    rc = make_params(&a, cfg, &p, &be);
    if (rc < 0)
        rc = a.target > 0 ? plan(&a, &p) : run_once(&a, &p);
    free(be);
    config_free(cfg);
    return rc;
}

/* --target-rate: the smallest number of inside addresses per node that holds it. */
static int plan(const struct cli_args *a, const struct sim_params *p)
{
    struct sim_plan pl;
    if (sim_plan_run(p, a->target, (uint32_t)a->max_inside, &pl) < 0) {
        fprintf(stderr, "twlb simulate: out of memory or bad parameters\n");
        return 1;
    }
    if (a->json) {
        printf("{\"target_rate\": %.1f, \"found\": %s, \"nodes\": %u, \"inside_per_node\": %u, "
               "\"inside_total\": %u, \"capacity\": %.2f, \"capacity_is_lower_bound\": %s, "
               "\"headroom\": %.4f, \"policy\": \"%s\", \"balance\": \"%s\", "
               "\"duration_s\": %u, \"runs\": %u}\n",
               a->target, pl.found ? "true" : "false", pl.nodes, pl.inside_per_node,
               pl.nodes * pl.inside_per_node, pl.capacity,
               pl.capacity_is_lower_bound ? "true" : "false", pl.headroom,
               sim_policy_name(p->policy), balance_algo_name(p->balance), p->duration_s, pl.runs);
        return pl.found ? 0 : 3;
    }
    printf("target %.0f connections per second, policy %s, %u node(s), %s over %u backend(s)\n",
           a->target, sim_policy_name(p->policy), pl.nodes, balance_algo_name(p->balance),
           p->n_backends);
    if (!pl.found) {
        printf("not held with zero refusals and zero stalls even by %llu inside addresses "
               "per node\n", (unsigned long long)a->max_inside);
        return 3;
    }
    printf("needs %u inside address(es) per node (%u in all)\n", pl.inside_per_node,
           pl.nodes * pl.inside_per_node);
    printf("that holds %s%.0f connections per second: headroom %s%.0f %%\n",
           pl.capacity_is_lower_bound ? "at least " : "", pl.capacity,
           pl.capacity_is_lower_bound ? "at least " : "", pl.headroom * 100);
    return 0;
}

static int run_once(const struct cli_args *a0, const struct sim_params *p0)
{
    const struct cli_args a = *a0;
    const struct sim_params p = *p0;
    FILE *cf = NULL, *sf = NULL;
    if ((a.csv && !(cf = open_out(a.csv))) || (a.svg && !(sf = open_out(a.svg)))) {
        if (cf)
            fclose(cf);
        return 1;
    }
    struct sim_result r;
    if (sim_run(&p, &r) < 0) {
        fprintf(stderr, "twlb simulate: out of memory or bad parameters\n");
        close_out(cf, a.csv, 1);
        close_out(sf, a.svg, 1);
        return 1;
    }
    int bad = close_out(cf, a.csv, !cf || write_csv(cf, &p, &r) == 0) < 0;
    bad |= close_out(sf, a.svg, !sf || sim_svg_write(sf, &p, &r) == 0) < 0;
    if (!bad)
        print_summary(&p, &r, a.json);
    free(r.per_second);
    return bad ? 1 : 0;
}
