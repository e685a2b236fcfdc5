/* balance.c - see balance.h.
 *
 * Choices that the header leaves open, made here:
 *
 *  - Weights: 0 means "only when nothing else is usable" (a backend at the very start of
 *    its slow start).  balancer_pick() first takes such backends out of the pick when a
 *    usable backend has a weight above 0 (into the balancer's own scratch mask, so the
 *    caller's array is left alone); when every usable backend has weight 0 they count as
 *    1 each (bk_weight()), i.e. as equals.
 *  - Slow start in round_robin and least_conn (whose choice among equals ignores
 *    weights): a warming backend (weight < weight_full) gains <weight> of credit each
 *    time its turn comes and takes the turn only when the credit reaches weight_full
 *    (then pays weight_full); otherwise the turn passes to the next one.  Over a cycle
 *    it thus gets weight/weight_full of a full backend's turns, deterministically, as
 *    smooth WRR would give it.  Should every candidate of a scan be warming and decline,
 *    the first one takes the pick (nothing else can).  Without warming backends both
 *    algorithms run exactly as before slow start existed.
 *  - least_conn: among backends with the same active/weight, the scan starts just after
 *    the previous pick, so equals take turns in array order (nginx rotates among equals
 *    too, with its smooth WRR; with weights the ratio itself already favours the heavy
 *    backend from the next connection on, so plain rotation is enough).
 *  - random_two: both draws are weight-proportional, the second among the backends other
 *    than the first; on equal active/weight the FIRST draw wins, so with equal load the
 *    pick is exactly weight-proportional.  xoshiro256** seeded by splitmix64(<seed>);
 *    bounded draws use rejection, so no modulo bias.
 *  - maglev: the turn order of the table fill is the backends sorted by name (not the
 *    array order), so the table depends only on the set of (name, weight): two twlb
 *    processes whose configs list the same backends in another order still agree.
 *    Weights: the heaviest backend takes one turn per round and a backend of weight w
 *    takes a turn in round r once r * w reaches its next threshold (thresholds step by
 *    the maximum weight), as Envoy's weighted Maglev does.  Each backend's slot count is
 *    then within a couple of slots of M * w / sum(w), whatever the weights; w turns
 *    in a row per round would let the first few heavy backends fill the whole table when
 *    the weights sum to more than M.
 *  - maglev, unusable backends: a client whose slot belongs to an unusable backend probes
 *    further slots chosen by its own hash, independently of one another, rather than
 *    walking to slot + 1, slot + 2, ...  Both keep every other client in place, but the
 *    table is built from arithmetic progressions, so which backend owns the slot after
 *    one of X's slots is strongly skewed: over 20 sets of 3 names, the share of X's
 *    displaced clients going to one survivor ranged from 30% to 78% with slot + 1; with
 *    independent probes it is 49% to 51%, i.e. the displaced clients spread over the
 *    survivors in proportion to their slots, so to their weights.  (A per-client stride,
 *    slot + k * step, balances too, but a step close to a backend's skip runs along that
 *    backend's slots: 0.6% of clients needed more than 20 probes with one of 3 usable,
 *    against 0.02% for independent probes.)  After MAGLEV_PROBES misses a linear sweep
 *    takes over, which bounds a pick by M steps and finds a backend with few slots.
 *  - Hashes: FNV-1a 64 finished with splitmix64's mixer, no per-process key, so every
 *    twlb process (and every version, as the unit test pins the values) places names
 *    and clients alike.  Unkeyed lets whoever controls many source addresses aim them
 *    at one backend, but a key would not stop that (replies reveal the placement) and
 *    would break the agreement between twlb processes.
 */
#include "core/balance.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Maglev lookup table size: prime (so every skip in 1..M-1 makes the permutation visit
 * every slot) and much larger than the number of backends (the paper's M >> N, which
 * keeps the disruption on a backend change close to the ideal 1/N).  The table costs
 * 4 * 65537 bytes per maglev pool. */
#define MAGLEV_M 65537u

/* Salts for the two Maglev name hashes ("maglev01", "maglev02" in ASCII). */
#define MAGLEV_SALT_OFFSET 0x6d61676c65763031ull
#define MAGLEV_SALT_SKIP 0x6d61676c65763032ull
/* ... and for a client's probes past an unusable slot ("maglev03"). */
#define MAGLEV_SALT_PROBE 0x6d61676c65763033ull
/* Independent probes before the sweep: with a fraction f of the slots usable, a displaced
 * client needs 1/f probes on average and falls back to the (skewed, see the top of the
 * file) sweep with probability (1-f)^64: 6e-7 for f = 1/5, 0.1% for f = 1/10. */
#define MAGLEV_PROBES 64

struct balancer {
    enum balance_algo algo;
    size_t n;
    size_t rr;       /* round_robin, least_conn: where the next scan starts */
    int64_t *cw;     /* weighted_round_robin: nginx's current_weight per backend */
    uint64_t rng[4]; /* random_two: xoshiro256** state */
    uint32_t *table; /* maglev: MAGLEV_M slots, each a backend index */
    uint64_t *credit; /* round_robin, least_conn: slow start credit per backend */
    uint8_t *mask;   /* all but maglev: usable[] without the weight-0 backends */
};

static const char *const algo_names[] = {
    [BAL_ROUND_ROBIN] = "round_robin",
    [BAL_WEIGHTED_RR] = "weighted_round_robin",
    [BAL_LEAST_CONN] = "least_conn",
    [BAL_RANDOM_TWO] = "random_two",
    [BAL_MAGLEV] = "maglev",
};
#define N_ALGOS (sizeof algo_names / sizeof algo_names[0])

/* The configuration name of <a>, or "?" for a value outside the enum. */
const char *balance_algo_name(enum balance_algo a)
{
    return (size_t)a < N_ALGOS ? algo_names[a] : "?";
}

/* 0 and *out set when <s> is exactly one of the names above, else -1. */
int balance_algo_parse(const char *s, enum balance_algo *out)
{
    for (size_t a = 0; a < N_ALGOS; a++)
        if (!strcmp(s, algo_names[a])) {
            *out = (enum balance_algo)a;
            return 0;
        }
    return -1;
}

static uint32_t bk_weight(const struct balance_backend *b) { return b->weight ? b->weight : 1; }

/* ---- hashing and randomness -------------------------------------------------------- */

#define SPLITMIX_GAMMA 0x9e3779b97f4a7c15ull

/* splitmix64's output function: a bijection on 64 bits with full avalanche. */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* FNV-1a 64 over <len> bytes, its offset basis XORed with <salt>, then one splitmix64
 * step.  FNV-1a alone mixes the last bytes poorly into the high bits (consecutive IPv4
 * addresses would share their top bits); the finalizer fixes that. */
static uint64_t hash_bytes(const void *p, size_t len, uint64_t salt)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull ^ salt;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return mix64(h + SPLITMIX_GAMMA);
}

/* Fixed forever: the unit test pins its value, since changing it would move every
 * maglev client when twlb is upgraded. */
uint64_t balance_hash_addr(const void *addr, size_t len) { return hash_bytes(addr, len, 0); }

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman and Vigna): fast, 256 bits of state, no allocation. */
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

/* Uniform in [0, bound), bound >= 1: reject the few values below 2^64 mod bound that
 * would otherwise make small results likelier. */
static uint64_t rand_below(balancer *b, uint64_t bound)
{
    uint64_t lim = -bound % bound, r;
    do
        r = next_rand(b);
    while (r < lim);
    return r % bound;
}

/* ---- maglev table ------------------------------------------------------------------ */

struct mg_entry {
    const char *name;
    uint32_t idx;     /* index in the caller's array */
    uint32_t offset;  /* permutation[j] = (offset + j * skip) mod M */
    uint32_t skip;    /* 1..M-1 */
    uint32_t next;    /* j of the next permutation slot to try */
    uint64_t weight;
    uint64_t target;  /* takes its next turn in the first round r with r * weight >= target */
};

static int mg_by_name(const void *x, const void *y)
{
    const struct mg_entry *a = x, *b = y;
    int c = strcmp(a->name, b->name);
    if (c)
        return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx; /* duplicate names: keep array order */
}

/* Maglev section 3.4: each backend walks its own permutation of the slots and claims
 * the next free one in its turn, until every slot is taken.  Turn order and weights as
 * described at the top of this file.  0, or -1 when out of memory. */
static int maglev_build(balancer *b, const struct balance_backend *bk)
{
    size_t n = b->n;
    struct mg_entry *e = malloc(n * sizeof *e);
    b->table = malloc(MAGLEV_M * sizeof *b->table);
    if (!e || !b->table) {
        free(e);
        return -1;
    }
    uint64_t wmax = 1;
    for (size_t i = 0; i < n; i++) {
        const char *name = bk[i].name ? bk[i].name : "";
        size_t len = strlen(name);
        e[i] = (struct mg_entry){
            .name = name,
            .idx = (uint32_t)i,
            .offset = (uint32_t)(hash_bytes(name, len, MAGLEV_SALT_OFFSET) % MAGLEV_M),
            .skip = (uint32_t)(hash_bytes(name, len, MAGLEV_SALT_SKIP) % (MAGLEV_M - 1)) + 1,
            .weight = bk_weight(&bk[i]),
        };
        if (e[i].weight > wmax)
            wmax = e[i].weight;
    }
    qsort(e, n, sizeof *e, mg_by_name);
    for (size_t i = 0; i < n; i++)
        e[i].target = wmax;
    for (uint32_t s = 0; s < MAGLEV_M; s++)
        b->table[s] = UINT32_MAX;

    /* The heaviest backend takes a turn every round, so this ends within M rounds; a
     * free slot always exists in a permutation while the table is not full, as each
     * permutation visits all M slots. */
    uint32_t filled = 0;
    for (uint64_t round = 1; filled < MAGLEV_M; round++) {
        for (size_t k = 0; k < n && filled < MAGLEV_M; k++) {
            struct mg_entry *m = &e[k];
            if (round * m->weight < m->target)
                continue;
            m->target += wmax;
            uint32_t c;
            do {
                c = (uint32_t)((m->offset + (uint64_t)m->next * m->skip) % MAGLEV_M);
                m->next++;
            } while (b->table[c] != UINT32_MAX);
            b->table[c] = m->idx;
            filled++;
        }
    }
    free(e);
    return 0;
}

/* ---- life cycle -------------------------------------------------------------------- */

/* All the memory a balancer will ever use is taken here: picks allocate nothing.
 * NULL when out of memory, and also for n == 0, n > INT_MAX (picks return an int) or an
 * unknown algo (the caller's bug; the config only yields known algorithms and pools of
 * 1 or more backends). */
balancer *balancer_new(enum balance_algo algo, const struct balance_backend *bk, size_t n,
                       uint64_t seed)
{
    if (n == 0 || n > INT_MAX || (size_t)algo >= N_ALGOS)
        return NULL;
    balancer *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->algo = algo;
    b->n = n;
    if (algo != BAL_MAGLEV && !(b->mask = calloc(n, 1)))
        goto oom;
    if ((algo == BAL_ROUND_ROBIN || algo == BAL_LEAST_CONN) &&
        !(b->credit = calloc(n, sizeof *b->credit)))
        goto oom;
    switch (algo) {
    case BAL_WEIGHTED_RR:
        if (!(b->cw = calloc(n, sizeof *b->cw)))
            goto oom;
        break;
    case BAL_RANDOM_TWO:
        /* splitmix64 as the xoshiro authors recommend for seeding: four distinct inputs
         * through a bijection, so the state is never all zero. */
        for (int i = 0; i < 4; i++)
            b->rng[i] = mix64(seed += SPLITMIX_GAMMA);
        break;
    case BAL_MAGLEV:
        if (maglev_build(b, bk) < 0)
            goto oom;
        break;
    case BAL_ROUND_ROBIN:
    case BAL_LEAST_CONN:
        break;
    }
    return b;
oom:
    balancer_free(b);
    return NULL;
}

void balancer_free(balancer *b)
{
    if (!b)
        return;
    free(b->cw);
    free(b->table);
    free(b->credit);
    free(b->mask);
    free(b);
}

/* ---- picking ----------------------------------------------------------------------- */

/* Is active_a / weight_a < active_c / weight_c?  Cross-multiplied in 64 bits: two 32-bit
 * factors cannot overflow, and no division rounds. */
static int lighter(const struct balance_backend *a, const struct balance_backend *c)
{
    return (uint64_t)a->active * bk_weight(c) < (uint64_t)c->active * bk_weight(a);
}

static int warming(const struct balance_backend *b) { return b->weight < b->weight_full; }

/* Backend <i>'s turn has come: does it take it?  A full one does; a warming one when its
 * credit reaches its full weight (see the top of this file). */
static int takes_turn(balancer *b, const struct balance_backend *bk, size_t i)
{
    if (!warming(&bk[i])) {
        b->credit[i] = 0;
        return 1;
    }
    b->credit[i] += bk[i].weight;
    if (b->credit[i] < bk[i].weight_full)
        return 0;
    b->credit[i] -= bk[i].weight_full;
    return 1;
}

/* The first usable backend at or after the rotation point that takes its turn (with
 * <ramp>: some usable backend is warming); the next scan starts after it. */
static int pick_rr(balancer *b, const struct balance_backend *bk, const uint8_t *usable,
                   int ramp)
{
    int first = -1;
    for (size_t k = 0; k < b->n; k++) {
        size_t i = (b->rr + k) % b->n;
        if (!usable[i])
            continue;
        if (first < 0)
            first = (int)i;
        if (!ramp || takes_turn(b, bk, i)) {
            b->rr = (i + 1) % b->n;
            return (int)i;
        }
    }
    if (first >= 0) /* every usable one is warming and declined: nothing else can serve */
        b->rr = ((size_t)first + 1) % b->n;
    return first;
}

/* nginx's ngx_http_upstream_get_peer (without its failure-driven effective_weight, as
 * failures show up here as unusable): every usable backend gains its weight, the
 * largest current weight wins (the first in array order on a tie) and gives back the
 * total.  Weights 5,1,1 give a a b a c a a.  Unusable backends neither gain nor lose,
 * so a backend that comes back gets no burst. */
static int pick_wrr(balancer *b, const struct balance_backend *bk, const uint8_t *usable)
{
    int64_t total = 0;
    int best = -1;
    for (size_t i = 0; i < b->n; i++) {
        if (!usable[i])
            continue;
        b->cw[i] += bk_weight(&bk[i]);
        total += bk_weight(&bk[i]);
        if (best < 0 || b->cw[i] > b->cw[best])
            best = (int)i;
    }
    if (best >= 0)
        b->cw[best] -= total;
    return best;
}

/* The lowest active/weight; among equals, the first one from the rotation point, which
 * then moves past the pick (see the top of this file).  With <ramp> (some usable backend
 * is warming) a second scan gives the turn among the equals as round_robin does. */
static int pick_least(balancer *b, const struct balance_backend *bk, const uint8_t *usable,
                      int ramp)
{
    int best = -1;
    for (size_t k = 0; k < b->n; k++) {
        size_t i = (b->rr + k) % b->n;
        if (usable[i] && (best < 0 || lighter(&bk[i], &bk[best])))
            best = (int)i;
    }
    if (best >= 0 && ramp) {
        int first = best; /* the first of the equals from the rotation point */
        best = -1;
        for (size_t k = 0; k < b->n && best < 0; k++) {
            size_t i = (b->rr + k) % b->n;
            if (usable[i] && !lighter(&bk[first], &bk[i]) && takes_turn(b, bk, i))
                best = (int)i;
        }
        if (best < 0)
            best = first; /* every equal one is warming and declined */
    }
    if (best >= 0)
        b->rr = ((size_t)best + 1) % b->n;
    return best;
}

/* Sum of the weights of the usable backends. */
static uint64_t usable_weight(const balancer *b, const struct balance_backend *bk,
                              const uint8_t *usable)
{
    uint64_t total = 0;
    for (size_t i = 0; i < b->n; i++)
        if (usable[i])
            total += bk_weight(&bk[i]);
    return total;
}

/* One usable backend other than <not> (-1: none excluded), drawn with probability
 * proportional to weight; <total> is the weight of the candidates, >= 1. */
static int draw(balancer *b, const struct balance_backend *bk, const uint8_t *usable, int not,
                uint64_t total)
{
    uint64_t r = rand_below(b, total);
    for (size_t i = 0; i < b->n; i++) {
        if (!usable[i] || (int)i == not)
            continue;
        if (r < bk_weight(&bk[i]))
            return (int)i;
        r -= bk_weight(&bk[i]);
    }
    return -1; /* not reached: r < total */
}

/* Power of two choices (Mitzenmacher): two distinct weighted draws, the lighter wins;
 * on a tie the first draw, which keeps equal-load picks weight-proportional.  Three
 * passes over the array: O(n) per pick, about 1 us for 1,000 backends. */
static int pick_two(balancer *b, const struct balance_backend *bk, const uint8_t *usable)
{
    uint64_t total = usable_weight(b, bk, usable);
    if (total == 0)
        return -1;
    int x = draw(b, bk, usable, -1, total);
    uint64_t rest = total - bk_weight(&bk[x]);
    if (rest == 0)
        return x;
    int y = draw(b, bk, usable, x, rest);
    return lighter(&bk[y], &bk[x]) ? y : x;
}

/* The backend of slot client_hash mod M.  When it is unusable, the client probes up to
 * MAGLEV_PROBES more slots, each drawn from its hash independently of the others and of
 * the table, and then, should all of those be unusable too, sweeps the table from the
 * last probe on, which finds a usable backend within M steps if there is one (else -1).
 * The table itself never changes, so the clients of usable backends stay where they are.
 * See the top of this file for why the probes are not simply slot + 1. */
static int pick_maglev(balancer *b, const uint8_t *usable, uint64_t hash)
{
    uint32_t slot = (uint32_t)(hash % MAGLEV_M);
    uint32_t i = b->table[slot];
    if (usable[i])
        return (int)i;
    for (uint64_t k = 1; k <= MAGLEV_PROBES; k++) {
        slot = (uint32_t)(mix64((hash ^ MAGLEV_SALT_PROBE) + k * SPLITMIX_GAMMA) % MAGLEV_M);
        i = b->table[slot];
        if (usable[i])
            return (int)i;
    }
    for (uint32_t k = 0; k < MAGLEV_M; k++) {
        if (++slot == MAGLEV_M)
            slot = 0;
        i = b->table[slot];
        if (usable[i])
            return (int)i;
    }
    return -1;
}

/* usable[], or the balancer's mask of it without the weight-0 backends when some usable
 * backend weighs more (see the top of this file).  *ramp: some backend left is warming. */
static const uint8_t *weigh_usable(balancer *b, const struct balance_backend *bk,
                                   const uint8_t *usable, int *ramp)
{
    int zero = 0, heavy = 0, warm = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (!usable[i])
            continue;
        if (bk[i].weight)
            heavy = 1;
        else
            zero = 1;
        warm |= warming(&bk[i]);
    }
    if (zero && heavy) {
        warm = 0;
        for (size_t i = 0; i < b->n; i++) {
            b->mask[i] = usable[i] && bk[i].weight;
            warm |= b->mask[i] && warming(&bk[i]);
        }
        usable = b->mask;
    }
    *ramp = warm;
    return usable;
}

int balancer_pick(balancer *b, const struct balance_backend *bk, const uint8_t *usable,
                  uint64_t client_hash)
{
    int ramp = 0;
    if (b->algo != BAL_MAGLEV) /* static: weights only count when its table is built */
        usable = weigh_usable(b, bk, usable, &ramp);
    switch (b->algo) {
    case BAL_ROUND_ROBIN: return pick_rr(b, bk, usable, ramp);
    case BAL_WEIGHTED_RR: return pick_wrr(b, bk, usable);
    case BAL_LEAST_CONN: return pick_least(b, bk, usable, ramp);
    case BAL_RANDOM_TWO: return pick_two(b, bk, usable);
    case BAL_MAGLEV: return pick_maglev(b, usable, client_hash);
    }
    return -1;
}

size_t balance_keep_primaries(const struct balance_backend *bk, uint8_t *usable, size_t n)
{
    size_t primaries = 0, backups = 0;
    for (size_t i = 0; i < n; i++)
        if (usable[i]) {
            if (bk[i].backup)
                backups++;
            else
                primaries++;
        }
    if (!primaries)
        return backups;
    for (size_t i = 0; i < n; i++)
        if (bk[i].backup)
            usable[i] = 0;
    return primaries;
}
