# SPDX-License-Identifier: BSD-2-Clause
"""test_badinput.py -- every bad input of issue 2 gets its error code, and the daemon (the
same connection, except after too_large) still answers the next request. Raw bytes on
purpose: the protocol is a contract with programs we did not write."""

import json
import socket
import time

from harness import ok, err, register, still_serving, wait_for


def bad(c, line, code="bad_request", what=None):
    """Sends one raw line, expects `code`, then checks the connection still serves."""
    if isinstance(line, str):
        line = line.encode()
    what = what or repr(line[:80])
    c.send(line + b"\n")
    msg = err(c.recv(), code, what)
    still_serving(c, what)
    return msg


def test_invalid_json(h):
    c = h.registry().conn()
    for line in ('{"op":"ping"', "hello", '{"op":}', "{'op':'ping'}", '{"op":"ping",}',
                 '{"op":"ping"} {"op":"ping"}', '{"op" "ping"}', "[", "}"):
        bad(c, line)


def test_not_an_object(h):
    c = h.registry().conn()
    for line in ('["op","ping"]', '"ping"', "42", "null", "true", "[]"):
        bad(c, line)


def test_missing_op(h):
    c = h.registry().conn()
    msg = bad(c, "{}")
    assert "op" in msg, "message should name the missing field: %r" % msg
    c.send(b'{"request_id":5,"service":"x"}\n')
    r = c.recv()
    err(r, "bad_request")
    assert r.get("request_id") == 5, "error must echo request_id: %r" % r


def test_unknown_op(h):
    c = h.registry().conn()
    for line in ('{"op":"fly"}', '{"op":"PING"}', '{"op":""}', '{"op":1}', '{"op":null}',
                 '{"op":["ping"]}'):
        bad(c, line)


def test_wrong_field_types(h):
    c = h.registry().conn()
    base = {"op": "register", "service": "svc", "host": "127.0.0.1", "port": 80, "check": "none"}
    cases = [("service", 5), ("service", None), ("host", 1), ("host", ["a"]), ("port", "80"),
             ("port", 80.5), ("port", True), ("port", None), ("description", 5), ("tags", "a"),
             ("tags", [1]), ("tags", {"a": 1}), ("ttl", "10"), ("ttl", 1.5), ("check", "udp"),
             ("check", 1)]
    for field, value in cases:
        req = dict(base)
        req[field] = value
        msg = bad(c, json.dumps(req), what="register %s=%r" % (field, value))
        assert field in msg, "message should name the field %r: %r" % (field, msg)
    for req in ({"op": "register", "host": "127.0.0.1", "port": 80},          # no service
                {"op": "register", "service": "svc", "host": "127.0.0.1"},    # no port
                {"op": "deregister", "id": "0123456789abcdef"},               # no token
                {"op": "deregister", "token": "x"},                           # no id
                {"op": "deregister", "id": 5, "token": "x"},
                {"op": "heartbeat", "id": "0123456789abcdef", "token": 7},
                {"op": "lookup"},
                {"op": "lookup", "service": 3},
                {"op": "lookup", "service": "svc", "all": "yes"},
                {"op": "lookup", "service": "svc", "tag": 5}):
        bad(c, json.dumps(req), what=json.dumps(req))
    # nothing of that was registered
    err(c.request({"op": "lookup", "service": "svc"}), "not_found")


def test_field_limits(h):
    c = h.registry().conn()

    def reg(**kw):
        req = {"op": "register", "service": "lim", "host": "127.0.0.1", "port": 80, "check": "none"}
        req.update(kw)
        return json.dumps(req)

    bad(c, reg(ttl=0), what="ttl 0")
    bad(c, reg(ttl=86401), what="ttl 86401")
    bad(c, reg(description="d" * 1025), what="description of 1025 bytes")
    bad(c, reg(description="é" * 513), what="description of 1026 bytes (513 two-byte chars)")
    bad(c, reg(tags=["t"] * 33), what="33 tags")
    bad(c, reg(host="h" * 254), what="host of 254 bytes")
    bad(c, reg(host="bad host!"), what="host with bad characters")
    bad(c, reg(host=""), what="empty host")
    # the limits themselves are fine
    register(c, "lim", 81, ttl=86400, description="d" * 1024, tags=["t%d" % i for i in range(32)])
    register(c, "lim", 82, ttl=1, host="a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61)


def test_service_name_rules(h):
    c = h.registry().conn()
    for name in ("a" * 64, "", "Web", "a b", "-web", ".web", "_web", "we/b", "wéb", "web\n", "we:b"):
        req = {"op": "register", "service": name, "host": "127.0.0.1", "port": 80, "check": "none"}
        bad(c, json.dumps(req), what="register service %r" % name)
        bad(c, json.dumps({"op": "lookup", "service": name}), what="lookup service %r" % name)
    for name in ("a" * 63, "0web", "a.b-c_d", "x"):
        register(c, name, 80)
        ok(c.request({"op": "lookup", "service": name}))


def test_port_range(h):
    c = h.registry().conn()
    for port in (0, 70000, 65536, -1, "80", 1e9):
        req = {"op": "register", "service": "p", "host": "127.0.0.1", "port": port, "check": "none"}
        bad(c, json.dumps(req), what="port %r" % (port,))
    register(c, "p", 1)
    register(c, "p", 65535)
    r = ok(c.request({"op": "lookup", "service": "p"}))
    assert sorted(i["port"] for i in r["instances"]) == [1, 65535], r


def test_line_of_65_kib(h):
    """Over the limit: too_large, then the connection is closed; the daemon serves on."""
    reg = h.registry()
    c = reg.conn()
    line = json.dumps({"op": "ping", "pad": "x" * (65 * 1024)}).encode()
    c.send(line + b"\n")
    err(c.recv(), "too_large", "a 65 KiB line")
    c.expect_closed()
    still_serving(reg.conn(), "a 65 KiB line on another connection")


def test_line_limit_is_64_kib_with_newline(h):
    reg = h.registry()
    c = reg.conn()
    head = b'{"op":"ping","request_id":1,"pad":"'
    tail = b'"}'
    exact = head + b"x" * (65536 - 1 - len(head) - len(tail)) + tail  # 65536 bytes with "\n"
    c.send(exact + b"\n")
    r = c.recv()
    assert r == {"ok": True, "request_id": 1}, "a line of exactly 64 KiB (newline included): %r" % r
    over = head + b"x" * (65537 - 1 - len(head) - len(tail)) + tail   # 65537 bytes with "\n"
    c.send(over + b"\n")
    err(c.recv(), "too_large", "a line of 64 KiB + 1 byte")
    c.expect_closed()


def test_endless_line_without_newline(h):
    """A peer that never sends a newline cannot make the daemon buffer without bound."""
    reg = h.registry()
    c = reg.conn()
    c.send(b'{"op":"ping","pad":"' + b"y" * 70000)
    err(c.recv(), "too_large", "70,000 bytes without a newline")
    c.expect_closed()
    still_serving(reg.conn(), "an endless line on another connection")


def test_line_split_into_1000_writes(h):
    reg = h.registry()
    c = reg.conn()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = b'{"op":"ping","request_id":"split","pad":"'
    line = head + b"z" * (1000 - len(head) - 3) + b'"}\n'
    assert len(line) == 1000
    for i in range(len(line)):
        c.send(line[i:i + 1])
        if i % 100 == 99:
            time.sleep(0.002)  # pacing, so the daemon sees many partial reads
    r = c.recv()
    assert r == {"ok": True, "request_id": "split"}, r
    still_serving(c, "a line split across 1,000 writes")


def test_silent_client_does_not_block_others(h):
    reg = h.registry()
    silent = [reg.conn() for _ in range(5)]
    half = reg.conn()
    half.send(b'{"op":"pi')   # a started line, never finished
    c = reg.conn()
    t0 = time.monotonic()
    for i in range(100):
        assert c.request({"op": "ping", "request_id": i}) == {"ok": True, "request_id": i}
    register(c, "busy", 1)
    ok(c.request({"op": "lookup", "service": "busy"}))
    assert time.monotonic() - t0 < 5, "silent clients slowed others down"
    # the silent ones were simply idle: they can still talk
    for s in silent:
        still_serving(s, "staying silent")
    half.send(b'ng"}\n')
    assert half.recv() == {"ok": True}


def test_client_disconnects_mid_line(h):
    reg = h.registry()
    c = reg.conn()
    base = ok(c.request({"op": "stats"}))["connections"]
    for linger in (False, True):
        for _ in range(10):
            d = reg.conn()
            if linger:  # close with a reset instead of a FIN
                d.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            d.send(b'{"op":"register","service":"half","host":"127.0.0.1","po')
            d.close()
    still_serving(c, "clients that disconnected mid-line")
    wait_for(lambda: ok(c.request({"op": "stats"}))["connections"] == base, 5,
             "the daemon to drop the closed connections")
    err(c.request({"op": "lookup", "service": "half"}), "not_found")


def test_nul_bytes(h):
    c = h.registry().conn()
    bad(c, b'{"op":"ping"}\x00', what="NUL after the object")
    bad(c, b'\x00{"op":"ping"}', what="NUL before the object")
    bad(c, b'{"op":"pi\x00ng"}', what="raw NUL in a string")
    bad(c, b'{"op":"ping",\x00"x":1}', what="raw NUL between members")
    bad(c, b'\x00', what="a lone NUL")
    bad(c, b'{"op":"lookup","service":"a\\u0000b"}', what="escaped NUL in the service name")


def test_invalid_utf8(h):
    c = h.registry().conn()
    bad(c, b'{"op":"ping","x":"\xff\xfe"}', what="0xff 0xfe")
    bad(c, b'{"op":"ping","x":"\xc0\xaf"}', what="overlong encoding")
    bad(c, b'{"op":"ping","x":"\xed\xa0\x80"}', what="UTF-8 encoded surrogate")
    bad(c, b'{"op":"ping","x":"\xe2\x82"}', what="truncated sequence")
    bad(c, b'{"op":"register","service":"\xc3","port":1}', what="invalid UTF-8 in a field")
    bad(c, b'\x80\x81\x82', what="garbage bytes")


def test_deep_nesting(h):
    c = h.registry().conn()
    bad(c, b"[" * 10000, what="10,000 [ unclosed")
    bad(c, b"[" * 10000 + b"]" * 10000, what="10,000 nested arrays")
    bad(c, b'{"op":"ping","x":' + b"[" * 10000 + b"]" * 10000 + b"}", what="10,000 levels in a field")
    bad(c, b'{"op":"ping","x":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}", what="5,000 nested objects")
    # 34 levels (object + 33 arrays) is over the limit of 32, however levels are counted
    bad(c, b'{"op":"ping","x":' + b"[" * 33 + b"]" * 33 + b"}", what="34 levels")
    # 31 levels (object + 30 arrays) is within it
    r = c.request(b'{"op":"ping","request_id":3,"x":' + b"[" * 30 + b"]" * 30 + b"}\n")
    assert r == {"ok": True, "request_id": 3}, "31 levels of nesting must be accepted: %r" % r


def test_bad_inputs_pipelined(h):
    """Errors keep their place in a pipeline: each line gets its own answer, in order."""
    c = h.registry().conn()
    lines = [b'{"op":"ping","request_id":0}', b"garbage", b'{"op":"ping","request_id":2}',
             b"\xff", b'{"op":"nope","request_id":4}', b'{"op":"ping","request_id":5}']
    c.send(b"\n".join(lines) + b"\n")
    r = [c.recv() for _ in lines]
    assert r[0] == {"ok": True, "request_id": 0}, r
    err(r[1], "bad_request")
    assert r[2] == {"ok": True, "request_id": 2}, r
    err(r[3], "bad_request")
    err(r[4], "bad_request")
    assert r[4]["request_id"] == 4, r
    assert r[5] == {"ok": True, "request_id": 5}, r
