/* balance.c - see balance.h. */
#include "balance.h"

#include <stdlib.h>
#include <string.h>

#define MAGLEV_M 65537u /* prime, much larger than the number of backends */

struct balancer {
    enum balance_algo algo;
    size_t n;
    size_t rr;        /* next index for round robin and least_conn tie-breaks */
    int64_t *cw;      /* smooth WRR current weights */
    uint64_t rng[4];  /* xoshiro256** state for random_two */
    uint32_t *table;  /* maglev: slot -> backend index */
};

static const char *const algo_names[] = {
    [BAL_ROUND_ROBIN] = "round_robin",
    [BAL_WEIGHTED_RR] = "weighted_round_robin",
    [BAL_LEAST_CONN] = "least_conn",
    [BAL_RANDOM_TWO] = "random_two",
    [BAL_MAGLEV] = "maglev",
};

const char *balance_algo_name(enum balance_algo a)
{
    return a <= BAL_MAGLEV ? algo_names[a] : "?";
}

int balance_algo_parse(const char *s, enum balance_algo *out)
{
    for (int a = BAL_ROUND_ROBIN; a <= BAL_MAGLEV; a++)
        if (!strcmp(s, algo_names[a])) {
            *out = (enum balance_algo)a;
            return 0;
        }
    return -1;
}

/* ---- hashing ----------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* FNV-1a 64 finished with splitmix64: fixed (no per-process seed), so two twlb processes
 * place clients and backends alike, and nearby inputs spread well. */
static uint64_t hash_bytes(const void *p, size_t len, uint64_t salt)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull ^ salt;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return splitmix64(h);
}

uint64_t balance_hash_addr(const void *addr, size_t len) { return hash_bytes(addr, len, 0); }

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_rand(balancer *b)
{
    uint64_t *s = b->rng;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* ---- maglev ------------------------------------------------------------------------ */

/* Maglev section 3.4: each backend walks its own permutation of the table and claims
 * the next free slot in its turn; a backend of weight w takes w turns per round. */
static int maglev_build(balancer *b, const struct balance_backend *bk)
{
    size_t n = b->n;
    uint32_t *offset = malloc(n * sizeof *offset), *skip = malloc(n * sizeof *skip);
    uint32_t *next = calloc(n, sizeof *next);
    b->table = malloc(MAGLEV_M * sizeof *b->table);
    if (!offset || !skip || !next || !b->table) {
        free(offset);
        free(skip);
        free(next);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(bk[i].name);
        offset[i] = (uint32_t)(hash_bytes(bk[i].name, len, 0x6d61676c65763031ull) % MAGLEV_M);
        skip[i] = (uint32_t)(hash_bytes(bk[i].name, len, 0x6d61676c65763032ull) % (MAGLEV_M - 1)) + 1;
    }
    for (uint32_t s = 0; s < MAGLEV_M; s++)
        b->table[s] = UINT32_MAX;
    uint32_t filled = 0;
    while (filled < MAGLEV_M) {
        for (size_t i = 0; i < n && filled < MAGLEV_M; i++) {
            uint32_t turns = bk[i].weight ? bk[i].weight : 1;
            for (uint32_t t = 0; t < turns && filled < MAGLEV_M; t++) {
                uint32_t c;
                do {
                    c = (uint32_t)((offset[i] + (uint64_t)next[i] * skip[i]) % MAGLEV_M);
                    next[i]++;
                } while (b->table[c] != UINT32_MAX);
                b->table[c] = (uint32_t)i;
                filled++;
            }
        }
    }
    free(offset);
    free(skip);
    free(next);
    return 0;
}

/* ---- life cycle -------------------------------------------------------------------- */

balancer *balancer_new(enum balance_algo algo, const struct balance_backend *bk, size_t n,
                       uint64_t seed)
{
    if (n == 0)
        return NULL;
    balancer *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->algo = algo;
    b->n = n;
    b->cw = calloc(n, sizeof *b->cw);
    if (!b->cw) {
        free(b);
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        b->rng[i] = seed = splitmix64(seed);
    if (algo == BAL_MAGLEV && maglev_build(b, bk) < 0) {
        balancer_free(b);
        return NULL;
    }
    return b;
}

void balancer_free(balancer *b)
{
    if (!b)
        return;
    free(b->cw);
    free(b->table);
    free(b);
}

/* ---- picking ----------------------------------------------------------------------- */

/* a/wa < c/wc without division */
static int lighter(uint32_t a, uint32_t wa, uint32_t c, uint32_t wc)
{
    return (uint64_t)a * (wc ? wc : 1) < (uint64_t)c * (wa ? wa : 1);
}

static int pick_rr(balancer *b, const uint8_t *usable)
{
    for (size_t k = 0; k < b->n; k++) {
        size_t i = (b->rr + k) % b->n;
        if (usable[i]) {
            b->rr = i + 1;
            return (int)i;
        }
    }
    return -1;
}

/* nginx's ngx_http_upstream_get_peer: smooth, so weights 5,1,1 give a a b a c a a. */
static int pick_wrr(balancer *b, const struct balance_backend *bk, const uint8_t *usable)
{
    int64_t total = 0;
    int best = -1;
    for (size_t i = 0; i < b->n; i++) {
        if (!usable[i])
            continue;
        b->cw[i] += bk[i].weight;
        total += bk[i].weight;
        if (best < 0 || b->cw[i] > b->cw[best])
            best = (int)i;
    }
    if (best >= 0)
        b->cw[best] -= total;
    return best;
}

/* Fewest active/weight; among equals, the rotation goes on (as nginx's least_conn). */
static int pick_least(balancer *b, const struct balance_backend *bk, const uint8_t *usable)
{
    int best = -1;
    for (size_t k = 0; k < b->n; k++) {
        size_t i = (b->rr + k) % b->n;
        if (!usable[i])
            continue;
        if (best < 0 || lighter(bk[i].active, bk[i].weight, bk[best].active, bk[best].weight))
            best = (int)i;
    }
    if (best >= 0)
        b->rr = (size_t)best + 1;
    return best;
}

/* One usable backend drawn with probability proportional to weight, skipping <not>. */
static int draw(balancer *b, const struct balance_backend *bk, const uint8_t *usable, int not)
{
    uint64_t total = 0;
    for (size_t i = 0; i < b->n; i++)
        if (usable[i] && (int)i != not)
            total += bk[i].weight ? bk[i].weight : 1;
    if (total == 0)
        return -1;
    uint64_t r = next_rand(b) % total;
    for (size_t i = 0; i < b->n; i++) {
        if (!usable[i] || (int)i == not)
            continue;
        uint64_t w = bk[i].weight ? bk[i].weight : 1;
        if (r < w)
            return (int)i;
        r -= w;
    }
    return -1;
}

static int pick_two(balancer *b, const struct balance_backend *bk, const uint8_t *usable)
{
    int x = draw(b, bk, usable, -1);
    if (x < 0)
        return -1;
    int y = draw(b, bk, usable, x);
    if (y < 0)
        return x;
    return lighter(bk[y].active, bk[y].weight, bk[x].active, bk[x].weight) ? y : x;
}

static int pick_maglev(balancer *b, const uint8_t *usable, uint64_t hash)
{
    uint32_t slot = (uint32_t)(hash % MAGLEV_M);
    /* An unusable backend's slots fall through to the next usable slot: only its
     * clients move. */
    for (uint32_t k = 0; k < MAGLEV_M; k++) {
        uint32_t i = b->table[(slot + k) % MAGLEV_M];
        if (usable[i])
            return (int)i;
    }
    return -1;
}

int balancer_pick(balancer *b, const struct balance_backend *bk, const uint8_t *usable,
                  uint64_t client_hash)
{
    switch (b->algo) {
    case BAL_ROUND_ROBIN: return pick_rr(b, usable);
    case BAL_WEIGHTED_RR: return pick_wrr(b, bk, usable);
    case BAL_LEAST_CONN: return pick_least(b, bk, usable);
    case BAL_RANDOM_TWO: return pick_two(b, bk, usable);
    case BAL_MAGLEV: return pick_maglev(b, usable, client_hash);
    }
    return -1;
}
