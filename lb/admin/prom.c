/* prom.c - see prom.h. */
#include "admin/prom.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/walk.h"

/* A growing string; sticky out-of-memory. */
struct sb {
    char *p;
    size_t len, cap;
    int oom;
};

/* Room for n more bytes and the terminating NUL.  Returns 0, or -1 (and oom) when
 * memory ran out. */
static int sb_reserve(struct sb *b, size_t n)
{
    if (b->len + n < b->cap)
        return 0;
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap <= b->len + n)
        cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
    while (!b->oom) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        sb_reserve(b, (size_t)n); /* then print again */
    }
}

static void sb_append(struct sb *b, const char *s, size_t n)
{
    if (b->oom || n == 0 || sb_reserve(b, n) < 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* A label value, escaped as the text format wants (\\, \", \n). */
static void sb_label_value(struct sb *b, const char *s)
{
    for (;;) {
        size_t n = strcspn(s, "\\\"\n");
        sb_append(b, s, n);
        s += n;
        if (!*s)
            return;
        sb_append(b, *s == '\n' ? "\\n" : *s == '"' ? "\\\"" : "\\\\", 2);
        s++;
    }
}

/* One name="value" pair, opening the braces when it is the first. */
static void sb_label(struct sb *b, int first, const char *name, const char *value)
{
    sb_append(b, first ? "{" : ",", 1);
    sb_append(b, name, strlen(name));
    sb_append(b, "=\"", 2);
    sb_label_value(b, value);
    sb_append(b, "\"", 1);
}

struct family_ctx {
    struct sb *b;
    const struct metric_family *f;
};

/* The name, a suffix, and the labels of the object's scope, "{" opened if any. */
static int sb_series(struct sb *b, const char *name, const char *suffix,
                     const struct metric_src *src, const char *const *names)
{
    sb_append(b, name, strlen(name));
    sb_append(b, suffix, strlen(suffix));
    int n = 0;
    for (; names[n]; n++)
        sb_label(b, n == 0, names[n], src->labels[n]);
    return n;
}

/* A sample value that need not be whole, as the text format spells it. */
static void sb_real(struct sb *b, double v)
{
    if (isnan(v))
        sb_append(b, "NaN", 3);
    else if (isinf(v))
        sb_append(b, v > 0 ? "+Inf" : "-Inf", 4);
    else
        sb_printf(b, "%.15g", v);
}

/* name_bucket{..,le="bound"} cumulative for every bound and +Inf, name_sum, name_count. */
static void emit_histogram(struct sb *b, const struct metric_family *f,
                           const struct metric_src *src, const char *const *names)
{
    const struct hist *h = f->read_hist(src);
    uint64_t cum = 0;
    for (size_t i = 0; i <= HIST_NBOUNDS; i++) {
        int n = sb_series(b, f->name, "_bucket", src, names);
        char le[32];
        if (i < HIST_NBOUNDS)
            snprintf(le, sizeof le, "%g", hist_bound_s(i));
        else
            snprintf(le, sizeof le, "+Inf");
        sb_label(b, n == 0, "le", le);
        cum += h->bucket[i];
        sb_printf(b, "} %" PRIu64 "\n", cum);
    }
    int n = sb_series(b, f->name, "_sum", src, names);
    sb_append(b, n ? "} " : " ", n ? 2 : 1);
    sb_real(b, hist_sum_s(h));
    sb_append(b, "\n", 1);
    n = sb_series(b, f->name, "_count", src, names);
    sb_printf(b, "%s %" PRIu64 "\n", n ? "}" : "", h->count);
}

static void emit_samples(void *arg, const struct metric_src *src)
{
    struct family_ctx *x = arg;
    const struct metric_family *f = x->f;
    const char *const *names = metric_scope_labels(f->scope);
    if (f->read_hist) {
        emit_histogram(x->b, f, src, names);
        return;
    }
    for (size_t k = 0; k < f->nvalues; k++) {
        int n = sb_series(x->b, f->name, "", src, names);
        if (f->label)
            sb_label(x->b, n++ == 0, f->label, f->value(k));
        sb_append(x->b, n ? "} " : " ", n ? 2 : 1);
        if (f->read_real)
            sb_real(x->b, f->read_real(src, k));
        else
            sb_printf(x->b, "%" PRId64, f->read(src, k));
        sb_append(x->b, "\n", 1);
    }
}

char *prom_render(const struct view *v, size_t *len)
{
    return prom_render_families(v, metrics_table, metrics_count, len);
}

char *prom_render_families(const struct view *v, const struct metric_family *table, size_t n,
                           size_t *len)
{
    struct sb b = {0};
    for (size_t i = 0; i < n; i++) {
        const struct metric_family *f = &table[i];
        sb_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                  metric_type_name(f->type));
        struct family_ctx x = {&b, f};
        walk_each(v, f->scope, emit_samples, &x);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
