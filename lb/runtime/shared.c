/* shared.c - see shared.h. */
#include "runtime/shared.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* (pool, backend, address) -> flags. */
struct flag {
    struct flag *next;
    char *pool, *name, *addr;
    struct backend_flags f;
};

/* key -> counter. */
struct count {
    struct count *next;
    char *key;
    unsigned n;
};

struct shared {
    pthread_mutex_t mu;
    struct flag *flags;
    struct count *counts;
};

struct shared *shared_new(void)
{
    struct shared *sh = calloc(1, sizeof *sh);
    if (sh)
        pthread_mutex_init(&sh->mu, NULL);
    return sh;
}

void shared_free(struct shared *sh)
{
    if (!sh)
        return;
    while (sh->flags) {
        struct flag *f = sh->flags;
        sh->flags = f->next;
        free(f->pool);
        free(f->name);
        free(f->addr);
        free(f);
    }
    while (sh->counts) {
        struct count *c = sh->counts;
        sh->counts = c->next;
        free(c->key);
        free(c);
    }
    pthread_mutex_destroy(&sh->mu);
    free(sh);
}

struct backend_flags *shared_backend(struct shared *sh, const char *pool,
                                     const struct cfg_backend *b)
{
    pthread_mutex_lock(&sh->mu);
    struct flag *f = sh->flags;
    while (f && (strcmp(f->pool, pool) || strcmp(f->name, b->name) || strcmp(f->addr, b->addr.text)))
        f = f->next;
    if (!f && (f = calloc(1, sizeof *f))) {
        f->pool = strdup(pool);
        f->name = strdup(b->name);
        f->addr = strdup(b->addr.text);
        f->f.up = 1;
        if (!f->pool || !f->name || !f->addr) {
            free(f->pool);
            free(f->name);
            free(f->addr);
            free(f);
            f = NULL;
        } else {
            f->next = sh->flags;
            sh->flags = f;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return f ? &f->f : NULL;
}

unsigned *shared_counter(struct shared *sh, const char *key)
{
    pthread_mutex_lock(&sh->mu);
    struct count *c = sh->counts;
    while (c && strcmp(c->key, key))
        c = c->next;
    if (!c && (c = calloc(1, sizeof *c))) {
        if (!(c->key = strdup(key))) {
            free(c);
            c = NULL;
        } else {
            c->next = sh->counts;
            sh->counts = c;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return c ? &c->n : NULL;
}
