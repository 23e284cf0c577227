# SPDX-License-Identifier: BSD-2-Clause
"""test_paging.py -- answers of any size: list and lookup in pages (issue 10).

A reply larger than --max-output-buffer used to be dropped and the client, which was
reading, cut off as if it were not. Now `list` and `lookup` take "limit" and "cursor"
and say "next" while there is more; an unpaged answer too large to send is answered
`too_large` naming those fields, on a connection that stays open. regctl and the client
library follow the pages, so `regctl list` and `regctl lookup --all` work at any size.

The big registries are built with pipelined registrations (--sync normal: durability is
not what is tested here), a few seconds each.
"""

import json
import re

from harness import err, ok, register, slow, still_serving, timeout, wait_for

DESC = "d" * 1024                      # the longest description allowed
TAGS = ["t%02d-" % i + "x" * 251 for i in range(32)]   # 32 tags of 255 bytes


# --- helpers -------------------------------------------------------------------------------
def register_pipelined(conn, reqs, batch=400):
    """Sends the register requests in pipelined batches (one write per batch) and checks
    every reply; returns the ids in request order."""
    ids = []
    for i in range(0, len(reqs), batch):
        chunk = reqs[i:i + batch]
        conn.send(b"".join(json.dumps(r).encode() + b"\n" for r in chunk))
        for r in chunk:
            rep = conn.recv(timeout=30)
            ok(rep, "register %s:%s" % (r["service"], r["port"]))
            ids.append(rep["id"])
    return ids


def many_services(h, n=20000):
    """A registry of n services, one instance each with a 1 KiB description: a list of
    ~21 MB, more than the default --max-output-buffer (16 MiB)."""
    reg = h.registry("--sync", "normal")
    # From four loopback addresses (four clients), 5,000 each: one client may register
    # only so many instances.
    per = 5000
    for k in range(0, n, per):
        src = reg.conn(timeout=30, source="127.0.0.%d" % (1 + k // per))
        register_pipelined(src, [{"op": "register", "service": "svc-%05d" % i,
                                  "host": "127.0.0.1", "port": 1 + i, "check": "none",
                                  "description": DESC} for i in range(k, min(n, k + per))])
        src.close()
    return reg, reg.conn(timeout=30)


def big_service(h, n=2000):
    """A registry whose service "big" has n instances carrying the longest description
    and 32 tags of 255 bytes (~9.5 KB each in an answer: ~19 MB for 2,000)."""
    reg = h.registry("--sync", "normal")
    c = reg.conn(timeout=30)
    ids = register_pipelined(c, [{"op": "register", "service": "big", "host": "127.0.0.1",
                                  "port": 1 + i, "check": "none", "description": DESC,
                                  "tags": TAGS} for i in range(n)], batch=200)
    return reg, c, ids


def pages(conn, req, limit=None, max_pages=100000):
    """Walks every page of req by hand; returns the list of page replies. Each page must
    fit one protocol line (64 KiB, newline included), as a request does."""
    out, cursor = [], None
    while True:
        r = dict(req)
        if limit is not None:
            r["limit"] = limit
        if cursor is not None:
            r["cursor"] = cursor
        conn.send(r)
        line = conn.recv_line(timeout=10)
        assert len(line) + 1 <= 65536, "page %d is %d bytes" % (len(out) + 1, len(line) + 1)
        rep = ok(json.loads(line), "page %d of %r" % (len(out) + 1, req))
        out.append(rep)
        assert len(out) <= max_pages, "more than %d pages" % max_pages
        if "next" not in rep:
            return out
        assert isinstance(rep["next"], str) and rep["next"] and rep["next"] != cursor, rep.get("next")
        cursor = rep["next"]


def too_large(resp, what):
    """An unpaged answer too large to send: too_large, naming the paging fields and the
    flag."""
    msg = err(resp, "too_large", what)
    for word in ('"limit"', '"cursor"', "--max-output-buffer"):
        assert word in msg, "%s: the message does not name %s: %r" % (what, word, msg)
    return msg


def log_lines(reg):
    with open(reg.log) as f:
        return [json.loads(l) for l in f if l.strip()]


def limit_line(reg, reply):
    def find():
        for e in log_lines(reg):
            if e.get("event") == "limit" and e.get("reply") == reply:
                return e
        return None
    return wait_for(find, 5, "a limit line for the %s reply" % reply)


# --- the two cases -----------------------------------------------------------------
@slow
@timeout(90)
def test_list_of_20000_services(h):
    reg, c = many_services(h)
    # All at once: too large to send, said so; the connection goes on, in order.
    c.send(b'{"op":"ping","request_id":1}\n{"op":"list","request_id":2}\n'
           b'{"op":"ping","request_id":3}\n')
    assert ok(c.recv())["request_id"] == 1
    rep = c.recv(timeout=10)
    assert rep.get("request_id") == 2, rep
    msg = too_large(rep, "unpaged list of 20,000 services")
    assert re.match(r"list is 2\d\.\d MiB, more than --max-output-buffer 16 MiB: ", msg), msg
    assert ok(c.recv())["request_id"] == 3
    still_serving(c, "a list answered too_large")
    # The log names the real size of the reply that did not fit, not what was left.
    ent = limit_line(reg, "list")
    assert ent["limit"] == "max_output_buffer" and ent["answer"] == "too_large", ent
    assert ent["bytes"] > 20000 * 1024 and ent["bytes"] > ent["max"] == 16 << 20, ent

    # By hand: pages in name order, each service exactly once.
    got = []
    for p in pages(c, {"op": "list"}, limit=700):
        assert 1 <= len(p["services"]) <= 700, len(p["services"])
        got += [s["service"] for s in p["services"]]
    want = ["svc-%05d" % i for i in range(20000)]
    assert got == want, "pages: %d services, %d distinct, first missing %r" % (
        len(got), len(set(got)), sorted(set(want) - set(got))[:3])

    # regctl follows the pages: a table of every service, exactly once.
    r = h.regctl("list", registry=reg.addr, timeout=60)
    assert r.rc == 0, r
    rows = r.out.splitlines()
    assert rows[0].split()[:3] == ["SERVICE", "INSTANCES", "PASSING"], rows[0]
    names = [row.split()[0] for row in rows[1:]]
    assert names == want, "regctl list: %d rows, %d distinct" % (len(names), len(set(names)))
    assert all(row.split()[1:3] == ["1", "1"] and row.endswith(DESC) for row in rows[1:])
    r = h.regctl("--json", "list", registry=reg.addr, timeout=60)
    assert r.rc == 0, r
    doc = json.loads(r.out)
    assert doc["ok"] is True and "next" not in doc, {k: doc[k] for k in doc if k != "services"}
    assert [s["service"] for s in doc["services"]] == want
    still_serving(c, "regctl listed 20,000 services")


@slow
@timeout(90)
def test_lookup_all_of_2000_instances(h):
    reg, c, ids = big_service(h)
    # All at once: too large to send, said so; the connection goes on.
    c.send(b'{"op":"lookup","service":"big","all":true,"request_id":"big"}\n')
    rep = c.recv(timeout=10)
    assert rep.get("request_id") == "big", rep
    msg = too_large(rep, "unpaged lookup of 2,000 instances")
    assert re.match(r'lookup of "big" is 1\d\.\d MiB, more than --max-output-buffer 16 MiB',
                    msg), msg
    still_serving(c, "a lookup answered too_large")
    ent = limit_line(reg, 'lookup of "big"')
    assert ent["bytes"] > 2000 * 9000 and ent["bytes"] > ent["max"], ent

    # By hand: pages in registration order, each instance exactly once, every page
    # headed by an instance handed out (round-robin), as an unpaged lookup is.
    got, heads = [], set()
    ports = {1 + i for i in range(2000)}
    for p in pages(c, {"op": "lookup", "service": "big", "all": True}, limit=100):
        assert 1 <= len(p["instances"]) <= 100
        assert p["service"] == "big" and p["host"] == "127.0.0.1" and p["port"] in ports, \
            {k: p[k] for k in p if k != "instances"}
        assert p["description"] == DESC
        heads.add(p["port"])
        for i in p["instances"]:
            assert i["tags"] == TAGS and i["description"] == DESC, i["id"]
        got += [i["id"] for i in p["instances"]]
    assert got == ids, "pages: %d instances, %d distinct" % (len(got), len(set(got)))
    assert len(heads) > 1, "every page handed out the same instance: %r" % heads
    # The same without "all" (every instance passes): the same order.
    got = [i["id"] for p in pages(c, {"op": "lookup", "service": "big"}, limit=10000)
           for i in p["instances"]]
    assert got == ids

    # regctl follows the pages: a header, one line per instance, each exactly once.
    r = h.regctl("lookup", "big", "--all", registry=reg.addr, timeout=60)
    assert r.rc == 0, r
    head, *lines = r.out.splitlines()
    assert head.split() == ["ENDPOINT", "STATUS", "LAST_CHECK", "ID"], head
    assert [l.split()[-1] for l in lines] == ids, "regctl lookup --all: %d lines" % len(lines)
    assert all(l.split()[1] == "passing" for l in lines)
    r = h.regctl("--json", "lookup", "big", "--all", registry=reg.addr, timeout=60)
    assert r.rc == 0, r
    assert [i["id"] for i in json.loads(r.out)["instances"]] == ids
    # The endpoint alone needs no list at all.
    r = h.regctl("lookup", "big", registry=reg.addr)
    assert r.rc == 0 and re.fullmatch(r"127\.0\.0\.1:\d+\n", r.out), r
    still_serving(c, "regctl looked 2,000 instances up")


def test_too_large_at_a_small_output_buffer(h):
    """The same at the smallest --max-output-buffer (4 KiB), quickly (and under
    valgrind, which skips the big ones): pages shrink to fit it; an entry that cannot
    fit even alone is too_large for its page, and the connection goes on."""
    reg = h.registry("--max-output-buffer", "4096")
    c = reg.conn()
    for i in range(30):
        register(c, "s%02d" % i, 100 + i, description="x" * 200)
    msg = too_large(c.request({"op": "list"}), "unpaged list of ~7 KiB")
    assert msg.startswith("list is ") and "4 KiB" in msg, msg
    ent = limit_line(reg, "list")
    assert 4096 < ent["bytes"] < 16384 and ent["max"] == 4096 and ent["paged"] is False, ent
    got = []
    for p in pages(c, {"op": "list"}, limit=10000):
        got += [s["service"] for s in p["services"]]
    assert got == ["s%02d" % i for i in range(30)]
    r = h.regctl("list", registry=reg.addr)
    assert r.rc == 0 and len(r.out.splitlines()) == 31, r
    # One instance of ~8.6 KB: no page can hold it at 4 KiB.
    register(c, "fat", 1, description=DESC, tags=TAGS)
    err(c.request({"op": "lookup", "service": "fat", "all": True}), "too_large")
    msg = err(c.request({"op": "lookup", "service": "fat", "limit": 1}), "too_large")
    assert msg.startswith('this page of lookup of "fat" is ') and '"limit"' in msg, msg
    still_serving(c, "replies too large for the output buffer")


# --- the fields ------------------------------------------------------------------------------
def test_page_limit_is_respected(h):
    reg = h.registry()
    c = reg.conn()
    ids = [register(c, "many", 2000 + i)[0] for i in range(25)]
    for i in range(25):
        register(c, "p%02d" % i, 100 + i, description="service %d" % i)
    names = sorted(["p%02d" % i for i in range(25)] + ["many"])
    for limit in (1, 2, 7, 24, 25, 26, 10000):
        ps = pages(c, {"op": "list"}, limit=limit)
        want = [min(limit, 26 - k * limit) for k in range(len(ps))]
        assert [len(p["services"]) for p in ps] == want, (limit, [len(p["services"]) for p in ps])
        assert [s["service"] for p in ps for s in p["services"]] == names
        assert all("next" in p for p in ps[:-1]) and "next" not in ps[-1]
        ps = pages(c, {"op": "lookup", "service": "many", "all": True}, limit=limit)
        assert [len(p["instances"]) for p in ps] == [min(limit, 25 - k * limit)
                                                     for k in range(len(ps))], limit
        assert [i["id"] for p in ps for i in p["instances"]] == ids
    # A cursor alone: the rest, as one page (it fits).
    first = ok(c.request({"op": "list", "limit": 5}))
    rest = ok(c.request({"op": "list", "cursor": first["next"]}))
    assert [s["service"] for s in rest["services"]] == names[5:] and "next" not in rest
    # An unpaged answer that fits is what it always was: no "next".
    assert "next" not in ok(c.request({"op": "list"}))
    assert len(ok(c.request({"op": "lookup", "service": "many", "all": True}))["instances"]) == 25
    # request_id is echoed on pages too.
    assert ok(c.request({"op": "list", "limit": 3, "request_id": 1}))["request_id"] == 1


def test_page_invalid_limit_or_cursor(h):
    reg = h.registry()
    c = reg.conn()
    register(c, "web", 80)
    for op in ({"op": "list"}, {"op": "lookup", "service": "web"}):
        for limit in (0, -1, 10001, "5", 1.5, True):
            msg = err(c.request(dict(op, limit=limit)), "bad_request", "limit %r" % (limit,))
            assert '"limit"' in msg, msg
        for cursor in ("", 7, "Not A Name", "x" * 200, ["a"]):
            msg = err(c.request(dict(op, cursor=cursor)), "bad_request", "cursor %r" % (cursor,))
            assert '"cursor"' in msg, msg
        still_serving(c, "invalid paging fields")
    for cursor in ("web", "1.", ".ab", "1.XYZ", "1.ab.cd"):  # not the shape lookup gives
        err(c.request({"op": "lookup", "service": "web", "cursor": cursor}), "bad_request", cursor)
    still_serving(c, "invalid lookup cursors")


def test_pages_under_concurrent_changes(h):
    """A list cursor is a name: services that come or go meanwhile do not shift the next
    page. A lookup cursor carries the last instance's id and index: the next page starts
    after that instance wherever it moved, or at its place when it was removed."""
    reg = h.registry()
    c = reg.conn()
    svc = {n: register(c, n, 80) for n in ("b", "d", "f", "h")}
    p1 = ok(c.request({"op": "list", "limit": 2}))
    assert [s["service"] for s in p1["services"]] == ["b", "d"], p1
    register(c, "a", 80)                          # before the cursor: not in later pages
    register(c, "e", 80)                          # after it: listed
    for gone in ("d", "h"):                       # the cursor's own service goes, and one after
        ok(c.request({"op": "deregister", "id": svc[gone][0], "token": svc[gone][1]}))
    p2 = ok(c.request({"op": "list", "cursor": p1["next"]}))
    assert [s["service"] for s in p2["services"]] == ["e", "f"] and "next" not in p2, p2

    owned = [register(c, "rr", 1000 + i) for i in range(8)]
    ids = [i for i, _ in owned]
    p1 = ok(c.request({"op": "lookup", "service": "rr", "limit": 3}))
    assert [i["id"] for i in p1["instances"]] == ids[:3]
    # An instance before the cursor goes: the next page still starts after ids[2].
    ok(c.request({"op": "deregister", "id": ids[0], "token": owned[0][1]}))
    p2 = ok(c.request({"op": "lookup", "service": "rr", "limit": 3, "cursor": p1["next"]}))
    assert [i["id"] for i in p2["instances"]] == ids[3:6], p2
    # The cursor's own instance goes: the next page starts where it was.
    ok(c.request({"op": "deregister", "id": ids[5], "token": owned[5][1]}))
    p3 = ok(c.request({"op": "lookup", "service": "rr", "limit": 3, "cursor": p2["next"]}))
    assert [i["id"] for i in p3["instances"]] == ids[6:8] and "next" not in p3, p3
    # A cursor past the end: an empty last page.
    p4 = ok(c.request({"op": "lookup", "service": "rr", "cursor": "99.%s" % ids[5]}))
    assert p4["instances"] == [] and "next" not in p4, p4
