"""Balancing through the real binary: three named backends; each algorithm against its
definition."""
import collections

import harness as h


def three(env, n, mode="name"):
    return [env.backend("b%d" % i, "127.%d.1.%d:0" % (n, i), mode) for i in (1, 2, 3)]


def test_round_robin_exact_rotation():
    n = h.new_net()
    with h.Env() as env:
        bs = three(env, n)
        cfg = h.pool_config(n, [{"name": "b%d" % i, "address": b.addr} for i, b in enumerate(bs, 1)])
        cfg["workers"] = 1  # a rotation is per worker: each has its own balancer
        env.twlb(cfg)
        got = [h.name_line(h.listen_addr(cfg)) for _ in range(9)]
        assert got == ["b1", "b2", "b3"] * 3, got


def test_round_robin_with_two_workers_shares_exactly_per_worker():
    """With two workers each rotates on its own; whatever the kernel's spread of clients
    between them, every worker's rotation is exact, so over 60 clients no backend is off
    its third by more than 2 (one rotation left unfinished in each worker)."""
    n = h.new_net()
    with h.Env() as env:
        bs = three(env, n)
        cfg = h.pool_config(n, [{"name": "b%d" % i, "address": b.addr} for i, b in enumerate(bs, 1)])
        cfg["workers"] = 2
        env.twlb(cfg)
        c = collections.Counter(h.name_line(h.listen_addr(cfg)) for _ in range(60))
        assert all(18 <= c[b] <= 22 for b in ("b1", "b2", "b3")), c
        st = h.stats(h.admin_addr(cfg))
        assert len(st["workers"]) == 2, st.get("workers")
        assert sum(w["sessions_total"] for w in st["workers"]) == 60, st["workers"]


def test_weighted_round_robin_exact_shares():
    n = h.new_net()
    with h.Env() as env:
        bs = three(env, n)
        weights = [5, 3, 1]
        cfg = h.pool_config(n, [{"name": "b%d" % i, "address": b.addr, "weight": w}
                                for i, (b, w) in enumerate(zip(bs, weights), 1)],
                            balance="weighted_round_robin")
        cfg["workers"] = 1  # exact shares are per worker: each has its own balancer
        env.twlb(cfg)
        c = collections.Counter(h.name_line(h.listen_addr(cfg)) for _ in range(90))
        assert c == {"b1": 50, "b2": 30, "b3": 10}, c
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_backend_connections_total", backend="b1") == 50


def test_least_conn_prefers_idle_backend():
    n = h.new_net()
    with h.Env() as env:
        bs = three(env, n)
        cfg = h.pool_config(n, [{"name": "b%d" % i, "address": b.addr} for i, b in enumerate(bs, 1)],
                            balance="least_conn")
        env.twlb(cfg)
        held = []
        try:
            first = {h.name_line(h.listen_addr(cfg), keep=held) for _ in range(2)}
            third = h.name_line(h.listen_addr(cfg), keep=held)
            assert third not in first, (first, third)
            # close the one on the idle backend: once twlb saw it, it is idle again
            held.pop().close()
            h.wait_for(lambda: h.metric(h.metrics(h.admin_addr(cfg)),
                                        "twlb_backend_connections_active") == 2,
                       2, "twlb to see the closed connection")
            again = h.name_line(h.listen_addr(cfg), keep=held)
            assert again == third, (third, again)
        finally:
            for s in held:
                s.close()


def test_random_two_covers_all_by_weight():
    n = h.new_net()
    with h.Env() as env:
        bs = three(env, n)
        cfg = h.pool_config(n, [{"name": "b%d" % i, "address": b.addr, "weight": w}
                                for i, (b, w) in enumerate(zip(bs, [2, 1, 1]), 1)],
                            balance="random_two")
        env.twlb(cfg)
        a = h.admin_addr(cfg)

        def idle_pick():
            # Each pick starts with every backend idle: with equal load the first of the
            # two draws wins, so a pick is exactly weight-proportional (1/2, 1/4, 1/4).
            # Without this wait the previous connection may still count as active and
            # skew the draws towards b2 and b3.
            h.wait_for(lambda: h.metric(h.metrics(a), "twlb_backend_connections_active") == 0,
                       2, "every backend idle", interval=0.002)
            return h.name_line(h.listen_addr(cfg))

        c = collections.Counter(idle_pick() for _ in range(300))
        # twlb seeds random_two itself (getrandom), so the counts are random.  Exact
        # (multinomial, 300 picks at 1/2, 1/4, 1/4): a backend missing has probability
        # 2 * 0.75^300 < 1e-37; b1 not above b2 (or b3) 1.7e-7 each, so this fails a
        # correct twlb with probability below 3.5e-7.
        assert set(c) == {"b1", "b2", "b3"}, c
        assert c["b1"] > c["b2"] and c["b1"] > c["b3"], c


def test_random_two_prefers_less_loaded():
    n = h.new_net()
    with h.Env() as env:
        bs = three(env, n)
        cfg = h.pool_config(n, [{"name": "b%d" % i, "address": b.addr} for i, b in enumerate(bs, 1)],
                            balance="random_two")
        env.twlb(cfg)
        held = []
        try:
            for _ in range(90):
                h.name_line(h.listen_addr(cfg), keep=held)
            st = h.stats(h.admin_addr(cfg))
            active = [b["active"] for b in st["pools"][0]["backends"]]
            # Power of two choices keeps the spread tight; twlb seeds it itself, so the
            # spread is random.  Exact probabilities (every held connection is active
            # when the next pick is made; computed over all load states): with two
            # choices the spread exceeds 8 with probability 1.0e-7 after any number of
            # picks (it does not grow with n); one random choice exceeds 8 after 90
            # picks in 51 % of runs.  (The earlier 30 picks with a bound of 6: a false
            # failure in 2.1e-6 of runs and only 31 % for one random choice.)
            assert max(active) - min(active) <= 8, active
        finally:
            for s in held:
                s.close()


def test_maglev_sticky_and_few_moves():
    n = h.new_net()
    clients = ["127.%d.5.%d" % (n, i) for i in range(1, 61)]
    with h.Env() as env:
        bs = three(env, n)
        backends = [{"name": "b%d" % i, "address": b.addr} for i, b in enumerate(bs, 1)]
        cfg = h.pool_config(n, backends, balance="maglev")
        p = env.twlb(cfg)
        first = {c: h.name_line(h.listen_addr(cfg), src=c) for c in clients}
        again = {c: h.name_line(h.listen_addr(cfg), src=c) for c in clients}
        assert first == again, "maglev is not sticky"
        assert set(first.values()) == {"b1", "b2", "b3"}, collections.Counter(first.values())
        h.stop(p)
        cfg2 = h.pool_config(n, backends[:2], balance="maglev")
        env.twlb(cfg2, name="twlb2.json")
        after = {c: h.name_line(h.listen_addr(cfg2), src=c) for c in clients}
        moved = [c for c in clients if first[c] != "b3" and after[c] != first[c]]
        assert len(moved) <= 2, "clients of b1/b2 moved: %s" % moved
        assert all(after[c] in ("b1", "b2") for c in clients)
