"""Backup backends and slow start through the real binary.

Backups: traffic goes to the non-backup backends while any is usable, to every usable
backup (balanced by the pool's algorithm) once all of them are down or disabled, and back
as soon as one returns, while a connection already on a backup stays.  A non-backup that
is only out of source ports does not send clients to the backups.

Slow start: a backend that returns (health checks, the operator's enable) gets a share of
the new connections that grows over slow_start_ms, the same in both workers, and its
effective weight in /stats and /metrics rises to its weight.

How sure the assertions are: the deterministic algorithms (round_robin,
weighted_round_robin, least_conn with every backend idle) give each worker an exact
sequence for given weights, so their shares are within one pick per worker of the
expected value; what varies is only when each connection happens.  random_two's draws are
random; its bounds are stated where they are checked."""
import collections
import signal
import socket
import time

import harness as h

HEALTH = {"interval_ms": 100, "timeout_ms": 100, "rise": 2, "fall": 1}


def backend_at(env, name, ip):
    """A "name" backend on a fixed port of <ip> (so that it can be started again)."""
    addr = "%s:%d" % (ip, h.free_port(ip))
    return env.backend(name, addr, "name"), addr


def up(admin, name):
    return h.metric(h.metrics(admin), "twlb_backend_up", backend=name)


def names(lst, count):
    return collections.Counter(h.name_line(lst) for _ in range(count))


def by_name(st, name):
    return next(b for b in st["pools"][0]["backends"] if b["name"] == name)


def test_backups_only_while_no_primary_is_usable():
    n = h.new_net()
    with h.Env() as env:
        p1, p1_addr = backend_at(env, "p1", "127.%d.1.1" % n)
        p2, p2_addr = backend_at(env, "p2", "127.%d.1.2" % n)
        k1, k1_addr = backend_at(env, "k1", "127.%d.1.3" % n)
        k2, k2_addr = backend_at(env, "k2", "127.%d.1.4" % n)
        cfg = h.pool_config(n, [
            {"name": "p1", "address": p1_addr},
            {"name": "p2", "address": p2_addr},
            {"name": "k1", "address": k1_addr, "backup": True, "weight": 3},
            {"name": "k2", "address": k2_addr, "backup": True},
        ], balance="weighted_round_robin", health=HEALTH)
        cfg["workers"] = 2
        env.twlb(cfg)
        a, lst = h.admin_addr(cfg), h.listen_addr(cfg)
        h.wait_for(lambda: all(up(a, b) == 1 for b in ("p1", "p2", "k1", "k2")), 5,
                   "every backend up")

        # Every primary up: no backup gets anything.
        c = names(lst, 40)
        assert set(c) == {"p1", "p2"}, c
        st = h.stats(a)
        assert [by_name(st, b)["backup"] for b in ("p1", "p2", "k1", "k2")] == \
            [False, False, True, True], st
        ms = h.metrics(a)
        assert h.metric(ms, "twlb_backend_backup", backend="k1") == 1
        assert h.metric(ms, "twlb_backend_backup", backend="p1") == 0

        # One primary disabled by the operator: the other one takes everything.
        assert h.http(a, "POST", "/pools/app/backends/p1/disable")[0] == 200
        assert names(lst, 20) == {"p2": 20}

        # The last primary down by its health checks: both backups, by their weights
        # (3:1 per worker under smooth WRR; 80 clients spread over 2 workers, so each
        # worker's count is within 1 of 3/4 of its own).
        h.stop(p2)
        h.wait_for(lambda: up(a, "p2") == 0, 5, "p2 marked down")
        c = names(lst, 80)
        assert set(c) == {"k1", "k2"}, c
        assert 56 <= c["k1"] <= 64, c
        held = []
        try:
            on_backup = h.name_line(lst, keep=held)
            assert on_backup in ("k1", "k2"), on_backup

            # p2 back: new connections go to it alone; the one on the backup stays.
            env.backend("p2", p2_addr, "name")
            h.wait_for(lambda: up(a, "p2") == 1, 5, "p2 back up")
            assert names(lst, 20) == {"p2": 20}
            held[0].sendall(b"still here")
            assert held[0].recv(100) == b"still here"
        finally:
            for s in held:
                s.close()

        # p1 enabled again: both primaries share, still no backup.
        assert h.http(a, "POST", "/pools/app/backends/p1/enable")[0] == 200
        c = names(lst, 40)
        assert set(c) == {"p1", "p2"}, c
        ms = h.metrics(a)
        k_total = sum(h.metric(ms, "twlb_backend_connections_total", backend=b)
                      for b in ("k1", "k2"))
        assert k_total == 81, k_total  # the 80 and the held one, nothing since


def test_backups_take_over_when_the_operator_drains_every_primary():
    n = h.new_net()
    with h.Env() as env:
        bs = {b: env.backend(b, "127.%d.1.%d:0" % (n, i), "name")
              for i, b in enumerate(("p1", "k1"), 1)}
        cfg = h.pool_config(n, [{"name": "p1", "address": bs["p1"].addr},
                                {"name": "k1", "address": bs["k1"].addr, "backup": True}])
        env.twlb(cfg)
        a, lst = h.admin_addr(cfg), h.listen_addr(cfg)
        assert names(lst, 6) == {"p1": 6}
        assert h.http(a, "POST", "/pools/app/backends/p1/drain")[0] == 200
        assert names(lst, 6) == {"k1": 6}
        assert h.http(a, "POST", "/pools/app/backends/p1/enable")[0] == 200
        assert names(lst, 6) == {"p1": 6}


def test_backup_is_reloadable():
    n = h.new_net()
    with h.Env() as env:
        bs = [env.backend("b%d" % i, "127.%d.1.%d:0" % (n, i), "name") for i in (1, 2)]
        backends = [{"name": "b1", "address": bs[0].addr},
                    {"name": "b2", "address": bs[1].addr, "backup": True}]
        cfg = h.pool_config(n, backends)
        p = env.twlb(cfg)
        a, lst = h.admin_addr(cfg), h.listen_addr(cfg)
        assert names(lst, 6) == {"b1": 6}
        backends[1]["backup"] = False
        env.write_config(cfg)
        p.send_signal(signal.SIGHUP)
        h.wait_for(lambda: not by_name(h.stats(a), "b2")["backup"], 5, "the reload")
        assert set(names(lst, 20)) == {"b1", "b2"}


def test_primary_out_of_ports_does_not_use_the_backup():
    """One source port toward p1, held by a live connection: the next client finds p1
    usable but portless, and is refused rather than sent to the backup."""
    n = h.new_net()
    with h.Env() as env:
        bs = {b: env.backend(b, "127.%d.1.%d:0" % (n, i), "name")
              for i, b in enumerate(("p1", "k1"), 1)}
        cfg = h.pool_config(n, [{"name": "p1", "address": bs["p1"].addr},
                                {"name": "k1", "address": bs["k1"].addr, "backup": True}],
                            source_ports="30000-30000")
        cfg["workers"] = 1  # a one-port range allows one worker (no hand-over)
        env.twlb(cfg)
        a, lst = h.admin_addr(cfg), h.listen_addr(cfg)
        held = []
        try:
            assert h.name_line(lst, keep=held) == "p1"
            try:
                s = socket.create_connection(h.split_addr(lst), timeout=5)
            except ConnectionResetError:  # the reset came before connect() returned
                got, how = b"", "reset"
            else:
                got, how = h.read_until_end(s, timeout=5)
                s.close()
            assert got == b"" and how in ("eof", "reset"), (got, how)
            ms = h.metrics(a)
            assert h.metric(ms, "twlb_ports_exhausted_total", backend="p1") >= 1
            assert h.metric(ms, "twlb_backend_connections_total", backend="k1") == 0
            assert h.metric(ms, "twlb_no_backend_total") == 1
        finally:
            for s in held:
                s.close()


# ---- slow start ---------------------------------------------------------------------


def ramp_run(admin, lst, returning, seconds, idle_first=False, rate=300):
    """Sequential clients for <seconds>, at most <rate> a second: [(t, name)] with t the
    seconds since the call, and the effective weights of <returning> read from /stats
    about every 0.2 s: [(t, weight)].  <idle_first>: each pick waits until no backend
    has a live connection (least_conn and random_two compare live connections; a
    client that has just closed may still count)."""
    t0 = time.monotonic()
    picks, weights = [], []
    next_stats = 0.0
    while len(picks) < seconds * rate:
        t = time.monotonic() - t0
        if t >= seconds:
            break
        if t < len(picks) / rate:  # an open-loop pace, not a wait for a condition
            time.sleep(len(picks) / rate - t)
            continue
        if t >= next_stats:
            weights.append((t, by_name(h.stats(admin), returning)["effective_weight"]))
            next_stats = t + 0.2
        if idle_first:
            h.wait_for(lambda: h.metric(h.metrics(admin),
                                        "twlb_backend_connections_active") == 0,
                       2, "every backend idle", interval=0.002)
        picks.append((time.monotonic() - t0, h.name_line(lst)))
    weights.append((time.monotonic() - t0, by_name(h.stats(admin), returning)["effective_weight"]))
    return picks, weights


def share(picks, name, lo, hi):
    window = [b for t, b in picks if lo <= t < hi]
    assert len(window) >= 20, "too few clients between %.1f and %.1f s: %d" % (lo, hi, len(window))
    return sum(b == name for b in window) / len(window), len(window)


def check_ramp(picks, weights, ramp_s, first_max, late_off=lambda n: 0.1):
    """b's share: clearly below half in the first second (below <first_max>, a function
    of the number of clients), about half once the ramp is over (off by at most
    <late_off>(n)); its effective weight never falls and ends at its weight (1)."""
    first, n_first = share(picks, "b", 0.0, 1.0)
    late, n_late = share(picks, "b", ramp_s + 0.2, ramp_s + 1.2)
    if not callable(first_max):
        first_max = (lambda v: lambda n: v)(first_max)
    assert first < first_max(n_first), "b got %.2f of %d clients in the first second" % (
        first, n_first)
    assert abs(late - 0.5) <= late_off(n_late), "b got %.2f of %d clients after the ramp" % (
        late, n_late)
    w = [x for _, x in weights]
    assert all(x <= y for x, y in zip(w, w[1:])), "effective weight fell: %s" % weights
    assert w[0] < 0.5 and w[-1] == 1.0, weights
    assert any(0 < x < 1 for x in w), "no weight between 0 and 1 seen: %s" % weights


def test_slow_start_after_health_checks_bring_a_backend_back():
    """weighted_round_robin, 2 workers, slow_start_ms 3000.  At f of its weight b gets
    f / (1 + f) of the picks; over the first second (f up to 1/3) that is 14 % on average,
    and a worker that did not ramp would give it 50 % of its clients, so the bound of
    25 % also fails if either worker took another start time (or none).  Each worker's
    sequence is deterministic: the share is off by at most one pick per worker."""
    n = h.new_net()
    with h.Env() as env:
        a_be, a_addr = backend_at(env, "a", "127.%d.1.1" % n)
        b_be, b_addr = backend_at(env, "b", "127.%d.1.2" % n)
        cfg = h.pool_config(n, [{"name": "a", "address": a_addr},
                                {"name": "b", "address": b_addr}],
                            balance="weighted_round_robin", health=HEALTH,
                            slow_start_ms=3000)
        cfg["workers"] = 2
        env.twlb(cfg)
        adm, lst = h.admin_addr(cfg), h.listen_addr(cfg)
        h.wait_for(lambda: up(adm, "b") == 1, 5, "b up")
        # At start nothing slow-starts: full weight, half the clients at once.
        assert by_name(h.stats(adm), "b")["effective_weight"] == 1.0
        assert h.metric(h.metrics(adm), "twlb_backend_effective_weight", backend="b") == 1.0
        c = names(lst, 40)
        assert 18 <= c["b"] <= 22, c
        h.stop(b_be)
        h.wait_for(lambda: up(adm, "b") == 0, 5, "b marked down")
        env.backend("b", b_addr, "name")
        h.wait_for(lambda: up(adm, "b") == 1, 5, "b back up", interval=0.005)
        picks, weights = ramp_run(adm, lst, "b", 4.4)
        check_ramp(picks, weights, 3.0, 0.25)
        assert h.metric(h.metrics(adm), "twlb_backend_effective_weight", backend="b") == 1.0


def test_slow_start_after_an_ejection_ends():
    """No health checks: b refuses connects until 3 failures in a row eject it for 1 s;
    it is listening again before that second is over, and ramps from the ejection's
    end (weighted_round_robin, 2 s, one worker: a passive ejection is per worker).
    First second: 19 % expected, exact."""
    n = h.new_net()
    with h.Env() as env:
        a_be, a_addr = backend_at(env, "a", "127.%d.1.1" % n)
        b_be, b_addr = backend_at(env, "b", "127.%d.1.2" % n)
        cfg = h.pool_config(n, [{"name": "a", "address": a_addr},
                                {"name": "b", "address": b_addr}],
                            balance="weighted_round_robin", slow_start_ms=2000)
        cfg["workers"] = 1
        env.twlb(cfg)
        adm, lst = h.admin_addr(cfg), h.listen_addr(cfg)
        h.stop(b_be)
        ejected = lambda: h.metric(h.metrics(adm), "twlb_backend_ejections_total", backend="b")
        for _ in range(20):  # b refuses, the retry goes to a; every other client tries b
            assert h.name_line(lst) == "a"
            if ejected():
                break
        assert ejected() == 1
        assert by_name(h.stats(adm), "b")["health"] == "ejected"
        env.backend("b", b_addr, "name")
        h.wait_for(lambda: by_name(h.stats(adm), "b")["health"] == "up", 3,
                   "the ejection to end", interval=0.005)
        picks, weights = ramp_run(adm, lst, "b", 3.4)
        check_ramp(picks, weights, 2.0, 0.3)


def ramp_after_enable(balance, idle_first):
    n = h.new_net()
    with h.Env() as env:
        bs = [env.backend(x, "127.%d.1.%d:0" % (n, i), "name") for i, x in enumerate("ab", 1)]
        cfg = h.pool_config(n, [{"name": "a", "address": bs[0].addr},
                                {"name": "b", "address": bs[1].addr, "weight": 2}],
                            balance=balance)
        # b (weight 2) against a (weight 1): round_robin ignores the weights, so b is
        # given the same weight as a here, for every algorithm to end at one half.
        if balance != "round_robin":
            cfg["pools"][0]["backends"][1]["weight"] = 1
        cfg["pools"][0]["backends"][1]["slow_start_ms"] = 2000
        cfg["workers"] = 2
        env.twlb(cfg)
        adm, lst = h.admin_addr(cfg), h.listen_addr(cfg)
        assert h.http(adm, "POST", "/pools/app/backends/b/disable")[0] == 200
        assert names(lst, 4) == {"a": 4}
        assert h.http(adm, "POST", "/pools/app/backends/b/enable")[0] == 200
        picks, weights = ramp_run(adm, lst, "b", 3.4, idle_first=idle_first)
        full = 2.0 if balance == "round_robin" else 1.0
        weights = [(t, x / full) for t, x in weights]
        return picks, weights


def test_slow_start_after_enable_round_robin():
    """round_robin ignores weights (b's is 2 here) but skips a warming backend's turns in
    proportion: exact per worker; in the first second of a 2 s ramp (f up to 1/2) b gets
    1 - 2 ln(3/2) = 19 % on average (measured: 56 of 300)."""
    picks, weights = ramp_after_enable("round_robin", False)
    check_ramp(picks, weights, 2.0, 0.3)


def test_slow_start_after_enable_least_conn():
    """least_conn with every backend idle (each pick waits for that): the equals take
    turns, b only in proportion to its ramp: 19 % expected in the first second of 2 s,
    exact per worker (measured: 56 of 300)."""
    picks, weights = ramp_after_enable("least_conn", True)
    check_ramp(picks, weights, 2.0, 0.3)


def test_slow_start_after_enable_random_two():
    """random_two with every backend idle: the first of the two draws wins, with
    probability f / (1 + f) for b, independently for each client.  The bounds are 5
    standard deviations of the binomial share over the n clients of the window, so each
    fails a correct twlb with probability below 3e-7 (normal approximation; n is about
    300 at the pace of ramp_run): the first second of the 2 s ramp, 19 % expected,
    below 0.19 + 5 sd (0.30 at n = 300) and never above 0.4; after the ramp one half,
    within 5 sd (0.36..0.64 at n = 300)."""
    sd = lambda p, n: (p * (1 - p) / n) ** 0.5
    picks, weights = ramp_after_enable("random_two", True)
    check_ramp(picks, weights, 2.0, lambda n: min(0.4, 0.19 + 5 * sd(0.19, n)),
               late_off=lambda n: 5 * sd(0.5, n))
