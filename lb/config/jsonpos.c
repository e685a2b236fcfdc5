/* jsonpos.c - see jsonpos.h. */
#include "config/jsonpos.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

struct scan {
    const char *s;
    size_t i, len;
    int line, col;
    struct jsonpos *jp;
    int bad;
};

static void adv(struct scan *sc)
{
    if (sc->i >= sc->len)
        return;
    if (sc->s[sc->i] == '\n') {
        sc->line++;
        sc->col = 1;
    } else {
        sc->col++;
    }
    sc->i++;
}

static void skip_ws(struct scan *sc)
{
    while (sc->i < sc->len && strchr(" \t\r\n", sc->s[sc->i]))
        adv(sc);
}

static int at(const struct scan *sc, char c)
{
    return sc->i < sc->len && sc->s[sc->i] == c;
}

static void note(struct scan *sc, const char *path)
{
    struct jsonpos *jp = sc->jp;
    if (jp->n == jp->cap) {
        size_t cap = jp->cap ? jp->cap * 2 : 64;
        struct jsonpos_entry *e = realloc(jp->e, cap * sizeof *e);
        if (!e) {
            sc->bad = 1;
            return;
        }
        jp->e = e;
        jp->cap = cap;
    }
    jp->e[jp->n] = (struct jsonpos_entry){strdup(path), sc->line, sc->col};
    if (jp->e[jp->n].path)
        jp->n++;
}

/* A string token; its raw text (escapes kept, good enough for key names) into <out>. */
static void string_token(struct scan *sc, char *out, size_t outlen)
{
    size_t o = 0;
    adv(sc); /* opening quote */
    while (sc->i < sc->len && sc->s[sc->i] != '"') {
        if (sc->s[sc->i] == '\\') {
            if (o + 1 < outlen)
                out[o++] = sc->s[sc->i];
            adv(sc);
        }
        if (o + 1 < outlen && sc->i < sc->len)
            out[o++] = sc->s[sc->i];
        adv(sc);
    }
    adv(sc);
    if (outlen)
        out[o] = 0;
}

/* "<path>.<key>" or "<path>[<k>]" into <out>; a path too deep to fit is cut, which only
 * means its values are not found. */
static void join(char *out, size_t len, const char *path, const char *key, int k)
{
    int n = key ? snprintf(out, len, "%s%s%s", path, *path ? "." : "", key)
                : snprintf(out, len, "%s[%d]", path, k);
    if (n < 0)
        out[0] = 0;
}

static void value(struct scan *sc, const char *path, int depth)
{
    skip_ws(sc);
    if (sc->i >= sc->len || depth > MAX_DEPTH) {
        sc->bad = 1;
        return;
    }
    note(sc, path);
    char sub[512], key[256];
    if (at(sc, '{') || at(sc, '[')) {
        int obj = at(sc, '{');
        adv(sc);
        for (int k = 0;; k++) {
            skip_ws(sc);
            if (sc->i >= sc->len || at(sc, obj ? '}' : ']'))
                break;
            if (obj) {
                if (!at(sc, '"')) {
                    sc->bad = 1;
                    return;
                }
                string_token(sc, key, sizeof key);
                skip_ws(sc);
                if (at(sc, ':'))
                    adv(sc);
            }
            join(sub, sizeof sub, path, obj ? key : NULL, k);
            value(sc, sub, depth + 1);
            if (sc->bad)
                return;
            skip_ws(sc);
            if (at(sc, ','))
                adv(sc);
        }
        adv(sc);
    } else if (at(sc, '"')) {
        string_token(sc, key, 0);
    } else {
        while (sc->i < sc->len && !strchr(",]} \t\r\n", sc->s[sc->i]))
            adv(sc);
    }
}

int jsonpos_scan(struct jsonpos *jp, const char *text, size_t len)
{
    struct scan sc = {.s = text, .len = len, .line = 1, .col = 1, .jp = jp};
    value(&sc, "", 0);
    return sc.bad ? -1 : 0;
}

const struct jsonpos_entry *jsonpos_find(const struct jsonpos *jp, const char *path)
{
    for (size_t i = 0; i < jp->n; i++)
        if (!strcmp(jp->e[i].path, path))
            return &jp->e[i];
    return NULL;
}

void jsonpos_free(struct jsonpos *jp)
{
    for (size_t i = 0; i < jp->n; i++)
        free(jp->e[i].path);
    free(jp->e);
    memset(jp, 0, sizeof *jp);
}
