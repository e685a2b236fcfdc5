"""20,000 sequential connections: twlb's open descriptors and memory come back to their
starting level.  The backend closes first on 1,000 source ports, so every port is reused
about 20 times while the backend still holds it in TIME_WAIT: the bookkeeping stays
bounded by the range, and (explicit ISNs) no SYN is rejected."""
import os
import time

import harness as h

TOTAL = 20000
WARMUP = 2000


def test_20000_sequential_connections_leave_nothing_behind():
    if os.geteuid() != 0:
        raise h.Skip("needs root for explicit ISNs (CAP_NET_ADMIN)")
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("b", "127.%d.1.1:0" % n, "close-first", "--reply-bytes", "64")
        cfg = h.pool_config(n, [{"name": "b", "address": be.addr}],
                            source_ports="20000-20999")
        cfg["reuse"] = {"isn": "explicit"}
        cfg["log"] = {"level": "warn"}
        p = env.twlb(cfg)
        addr = h.listen_addr(cfg)
        deadline = time.monotonic() + 120
        for i in range(WARMUP):
            assert h.request(addr).startswith(b"b\n"), i
        # measure with no connection open (twlb closes its side a moment after ours)
        h.wait_for(lambda: h.open_tcp(n) == 0, 5, "every connection of the warm-up closed")
        fds0, rss0 = h.proc_fds(p.pid), h.proc_rss_kb(p.pid)
        for i in range(TOTAL - WARMUP):
            assert time.monotonic() < deadline, "too slow: %d connections in 120 s" % i
            got = h.request(addr)
            assert got.startswith(b"b\n") and len(got) == 64, (i, got)
        h.wait_for(lambda: h.open_tcp(n) == 0, 5, "every connection closed")
        fds1, rss1 = h.proc_fds(p.pid), h.proc_rss_kb(p.pid)
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_backend_connections_total") == TOTAL
        assert h.metric(ms, "twlb_sessions_active") == 0
        assert h.metric(ms, "twlb_syn_retransmits_total") == 0
        assert h.metric(ms, "twlb_port_reuses_total") >= TOTAL - 1000
        assert fds1 == fds0, "open fds %d -> %d" % (fds0, fds1)
        assert rss1 - rss0 < 2048, "RSS grew %d KiB" % (rss1 - rss0)
