# SPDX-License-Identifier: BSD-2-Clause
"""test_svc_log.py -- the sample services' log: the registry's health checks (connections
that close without a byte) are counted, not logged one by one; real clients are logged
as ever."""

import re
import socket

from harness import wait_for


def test_probes_counted_requests_logged(h):
    reg = h.registry("--check-interval", "0.05", "--check-timeout", "0.05")
    svc = h.service("tsserv", reg.addr)
    for _ in range(3):
        s = socket.create_connection((svc.host, svc.port), timeout=5)
        s.close()
    c = svc.conn()
    c.send("hello\n")
    assert c.recv_line().endswith(b"hello")
    c.close()
    wait_for(lambda: "closed after 1 request" in svc.stderr(), 5, "the client's close line")
    # A few of the registry's checks at 0.05 s on top of ours.
    def checked():
        r = reg.request({"op": "lookup", "service": "timestamp", "all": True})
        return r.get("ok") and r["instances"][0].get("last_check")
    wait_for(checked, 5, "tsserv registered and checked by the registry")
    assert svc.stop() == 0, svc.tail()
    err = svc.stderr()
    assert err.count(": connected") == 1, "only the real client is logged:\n%s" % err
    assert re.search(r"request #1 \(5 bytes\): hello", err), err
    m = re.search(r"(\d+) connections? closed without a request \(health checks\)", err)
    assert m and int(m.group(1)) >= 4, "the probes should be counted at stop:\n%s" % err
