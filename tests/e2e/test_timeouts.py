# SPDX-License-Identifier: BSD-2-Clause
"""test_timeouts.py -- --request-timeout times one unfinished request line, not a connection.

A client that pipelines (each read completes one request and starts the next) is
active, however long it goes on; only a line that stays unfinished for the whole timeout
is a slowloris (tests/e2e/test_hardening.py::test_request_timeout_slowloris).
"""

import json
import socket
import time

from harness import ok, scaled, still_serving, timing


def log_limits(reg, why):
    try:
        with open(reg.log) as f:
            lines = [json.loads(l) for l in f if l.strip()]
    except (OSError, ValueError):
        return []
    return [e for e in lines if e.get("event") == "limit" and e.get("limit") == why]


@timing
def test_request_timeout_spares_a_pipelining_client(h):
    """Issue 10: every 20 ms the client finishes the line it began and begins the next
    (`ng"}\\n{"op":"pi`), so a partial line is always waiting but none is older than
    20 ms. At --request-timeout 1 it must never be dropped, and every ping is answered."""
    reg = h.registry("--request-timeout", "1")
    c = reg.conn()
    c.send(b'{"op":"pi')                      # the first line, unfinished
    sent = answered = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:        # three request timeouts
        try:
            c.send(b'ng"}\n{"op":"pi')        # finishes a ping, begins the next
        except (BrokenPipeError, ConnectionResetError) as e:
            raise AssertionError("dropped after %.2f s and %d answered pings (%s)"
                                 % (time.monotonic() - t0, answered, e))
        sent += 1
        # Read what comes until the next tick: the client keeps its own pace (20 ms).
        tick = t0 + 0.02 * sent
        while True:
            left = tick - time.monotonic()
            if left <= 0:
                break
            c.sock.settimeout(left)
            try:
                chunk = c.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                raise AssertionError("dropped after %.2f s and %d answered pings"
                                     % (time.monotonic() - t0, answered))
            c.buf += chunk
            while b"\n" in c.buf:
                line, _, c.buf = c.buf.partition(b"\n")
                ok(json.loads(line), "ping %d" % (answered + 1))
                answered += 1
    c.send(b'ng"}\n')                         # finish the last one
    while answered < sent + 1:
        try:
            ok(c.recv(timeout=5), "ping %d" % (answered + 1))
        except EOFError:
            raise AssertionError("dropped at the end after %d of %d pings answered"
                                 % (answered, sent + 1))
        answered += 1
    assert sent > 100, "only %d pings sent in 3 s" % sent
    still_serving(c, "3 s of pipelined pings")
    assert not log_limits(reg, "request_timeout"), log_limits(reg, "request_timeout")
