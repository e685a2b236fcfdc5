"""Balancing through the real binary: three named backends; each algorithm against its
definition."""
import collections
import time

import harness as h


def three(env, n, mode="name"):
    return [env.backend("b%d" % i, "127.%d.1.%d:0" % (n, i), mode) for i in (1, 2, 3)]


def test_round_robin_exact_rotation():
    n = h.new_net()
    with h.Env() as env:
        bs = three(env, n)
        cfg = h.pool_config(n, [{"name": "b%d" % i, "address": b.addr} for i, b in enumerate(bs, 1)])
        env.twlb(cfg)
        got = [h.name_line(h.listen_addr(cfg)) for _ in range(9)]
        assert got == ["b1", "b2", "b3"] * 3, got


def test_weighted_round_robin_exact_shares():
    n = h.new_net()
    with h.Env() as env:
        bs = three(env, n)
        weights = [5, 3, 1]
        cfg = h.pool_config(n, [{"name": "b%d" % i, "address": b.addr, "weight": w}
                                for i, (b, w) in enumerate(zip(bs, weights), 1)],
                            balance="weighted_round_robin")
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
            for _ in range(100):
                if h.metric(h.metrics(h.admin_addr(cfg)), "twlb_backend_connections_active") == 2:
                    break
                time.sleep(0.02)
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
        c = collections.Counter(h.name_line(h.listen_addr(cfg)) for _ in range(300))
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
            for _ in range(30):
                h.name_line(h.listen_addr(cfg), keep=held)
            st = h.stats(h.admin_addr(cfg))
            active = [b["active"] for b in st["pools"][0]["backends"]]
            # power of two choices keeps the spread tight.  With exact counts a spread
            # above 4 after 30 picks happens in about 0.07 % of runs, above 6 never seen in
            # 20,000 simulated runs; one random choice exceeds 6 in 31 % of them.
            assert max(active) - min(active) <= 6, active
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
