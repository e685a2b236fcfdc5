/* prom.c - see prom.h. */
#include "admin/prom.h"

#include <inttypes.h>
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

static void emit_samples(void *arg, const struct metric_src *src)
{
    struct family_ctx *x = arg;
    const struct metric_family *f = x->f;
    const char *const *names = metric_scope_labels(f->scope);
    for (size_t k = 0; k < f->nvalues; k++) {
        sb_append(x->b, f->name, strlen(f->name));
        int n = 0;
        for (; names[n]; n++)
            sb_label(x->b, n == 0, names[n], src->labels[n]);
        if (f->label)
            sb_label(x->b, n++ == 0, f->label, f->value(k));
        int64_t v = f->read(src, k);
        if (f->milli) /* never negative */
            sb_printf(x->b, "%s %" PRId64 ".%03" PRId64 "\n", n ? "}" : "", v / 1000, v % 1000);
        else
            sb_printf(x->b, "%s %" PRId64 "\n", n ? "}" : "", v);
    }
}

char *prom_render(const struct view *v, size_t *len)
{
    struct sb b = {0};
    for (size_t i = 0; i < metrics_count; i++) {
        const struct metric_family *f = &metrics_table[i];
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
