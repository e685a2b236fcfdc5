/* clients.c - see clients.h. */
#include "runtime/clients.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/cidr.h"
#include "core/ctable.h"
#include "os/log.h"
#include "runtime/listener_stats.h"

/* The core takes the family as the kernel numbers it. */
_Static_assert(CIDR_INET == AF_INET && CIDR_INET6 == AF_INET6, "address families");

struct client_table {
    struct client_table *next;    /* the registry's list, under its mutex */
    struct clients_registry *reg;
    unsigned refs;                /* under the registry's mutex */
    char name[CFG_NAME_MAX + 1];
    pthread_mutex_t mu;
    ctable *t;                    /* under mu */
    int full_logged;              /* under mu: the cap was hit and said so */
};

struct clients_registry {
    pthread_mutex_t mu;
    struct client_table *tables;
    uint8_t key[16];              /* SipHash key of every table: clients cannot choose
                                     addresses that collide */
};

struct clients_registry *clients_registry_new(void)
{
    struct clients_registry *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (getrandom(r->key, sizeof r->key, 0) != sizeof r->key) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void table_free(struct client_table *t)
{
    ctable_free(t->t);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void clients_registry_free(struct clients_registry *r)
{
    if (!r)
        return;
    while (r->tables) {
        struct client_table *t = r->tables;
        r->tables = t->next;
        table_free(t);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

struct client_table *clients_get(struct clients_registry *r, const char *name)
{
    pthread_mutex_lock(&r->mu);
    struct client_table *t = r->tables;
    while (t && strcmp(t->name, name))
        t = t->next;
    if (!t && (t = calloc(1, sizeof *t))) {
        if (!(t->t = ctable_new(CLIENTS_TABLE_MAX, r->key))) {
            free(t);
            t = NULL;
        } else {
            snprintf(t->name, sizeof t->name, "%s", name);
            t->reg = r;
            pthread_mutex_init(&t->mu, NULL);
            t->next = r->tables;
            r->tables = t;
        }
    }
    if (t)
        t->refs++;
    pthread_mutex_unlock(&r->mu);
    return t;
}

void clients_put(struct client_table *t)
{
    if (!t)
        return;
    struct clients_registry *r = t->reg;
    pthread_mutex_lock(&r->mu);
    if (--t->refs == 0) {
        struct client_table **p = &r->tables;
        while (*p != t)
            p = &(*p)->next;
        *p = t->next;
    } else {
        t = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    if (t)
        table_free(t);
}

/* The address bytes of <peer> and their family (0 for another family). */
static const uint8_t *peer_bytes(const struct sockaddr *peer, int *family)
{
    *family = peer->sa_family;
    if (peer->sa_family == AF_INET)
        return (const uint8_t *)&((const struct sockaddr_in *)peer)->sin_addr;
    if (peer->sa_family == AF_INET6)
        return (const uint8_t *)&((const struct sockaddr_in6 *)peer)->sin6_addr;
    *family = 0;
    return NULL;
}

static void peer_key(const struct sockaddr *peer, uint8_t key[16])
{
    int family;
    const uint8_t *addr = peer_bytes(peer, &family);
    if (addr)
        cidr_client_key(family, addr, key);
    else
        memset(key, 0, 16);
}

enum reject_reason clients_admit(const struct gen *g, size_t li, const struct sockaddr *peer,
                                 uint64_t now_ms, struct client_table **slot)
{
    const struct cfg_listener *lc = &g->cfg->listeners[li];
    *slot = NULL;
    if (lc->n_allow || lc->n_deny) {
        int family;
        const uint8_t *addr = peer_bytes(peer, &family);
        /* A client of no address family we know matches no prefix. */
        static const uint8_t none[16];
        if (cidr_acl_refuses(lc->allow, lc->n_allow, lc->deny, lc->n_deny, family,
                             addr ? addr : none))
            return REJ_ACL;
    }
    struct client_table *t = g->clients ? g->clients[li] : NULL;
    if (!t)
        return REJ_N;
    uint8_t key[16];
    peer_key(peer, key);
    const struct ctable_limits lim = {lc->max_conns_per_client, lc->rate_per_client,
                                      lc->burst_per_client};
    pthread_mutex_lock(&t->mu);
    enum ctable_verdict v = ctable_admit(t->t, key, &lim, now_ms);
    int say_full = v == CTABLE_FULL && !t->full_logged;
    if (say_full)
        t->full_logged = 1;
    pthread_mutex_unlock(&t->mu);
    if (say_full) /* once per table: it needs CLIENTS_TABLE_MAX connected clients */
        log_warn("listener %s: %d clients with live connections: new clients are refused "
                 "(client_limit) until one has none left", lc->name, CLIENTS_TABLE_MAX);
    switch (v) {
    case CTABLE_OK:
        *slot = t;
        return REJ_N;
    case CTABLE_RATE:
        return REJ_CLIENT_RATE;
    case CTABLE_LIMIT:
    case CTABLE_FULL:
        break;
    }
    return REJ_CLIENT_LIMIT;
}

int clients_take(struct client_table *t, const struct sockaddr *peer, uint64_t now_ms)
{
    uint8_t key[16];
    peer_key(peer, key);
    pthread_mutex_lock(&t->mu);
    int r = ctable_take(t->t, key, now_ms);
    pthread_mutex_unlock(&t->mu);
    return r;
}

void clients_release(struct client_table *t, const struct sockaddr *peer, uint64_t now_ms)
{
    uint8_t key[16];
    peer_key(peer, key);
    pthread_mutex_lock(&t->mu);
    ctable_release(t->t, key, now_ms);
    pthread_mutex_unlock(&t->mu);
}

/* A new window of refusal lines when the last one is over, summing up what it did not
 * log. */
static void refused_window(struct worker *w, uint64_t now_ms)
{
    if (now_ms - w->refused_log_since_ms < 1000)
        return;
    if (w->refused_unlogged)
        log_info("and %llu more clients refused (refusals are logged at most %d a second; "
                 "twlb_rejected_total counts them all)",
                 (unsigned long long)w->refused_unlogged, CLIENTS_LOG_PER_S);
    w->refused_log_since_ms = now_ms;
    w->refused_logged = 0;
    w->refused_unlogged = 0;
}

void clients_log_refused(struct worker *w, const char *listener, const struct sockaddr *peer,
                         enum reject_reason why)
{
    refused_window(w, worker_now_ms(w));
    if (w->refused_logged >= CLIENTS_LOG_PER_S) {
        w->refused_unlogged++;
        return;
    }
    w->refused_logged++;
    char ip[INET6_ADDRSTRLEN] = "?";
    int family;
    const uint8_t *addr = peer_bytes(peer, &family);
    if (addr)
        inet_ntop(family, addr, ip, sizeof ip);
    log_info("listener %s: refused client %s (%s)", listener, ip,
             listener_stats_reason_name(why));
}

void clients_tick(struct worker *w, uint64_t now_ms)
{
    refused_window(w, now_ms);
    const struct gen *g = w->cur;
    if (w->index != 0 || !g || !g->clients)
        return;
    for (size_t i = 0; i < g->cfg->n_listeners; i++) {
        struct client_table *t = g->clients[i];
        if (!t)
            continue;
        pthread_mutex_lock(&t->mu);
        ctable_expire(t->t, now_ms);
        pthread_mutex_unlock(&t->mu);
    }
}
