# SPDX-License-Identifier: BSD-2-Clause
"""httpbench.py — helpers for bench.sh's HTTP rows (issue 13, "Performance").

    httpbench.py prepare LINE_ADDR HTTP_URL SERVICE N OUT
        registers N instances of SERVICE (check none) through the line protocol, fetches
        GET /v1/health/service/SERVICE?passing, checks it is 200 with N passing entries,
        writes the body to OUT and prints its size: the answer wrk will ask for, and the
        bytes nginx and etcd are given to serve.
    httpbench.py get URL SIZE
        exit 0 when URL answers 200 with a body of SIZE bytes (readiness of nginx).
    httpbench.py etcd-put URL KEY FILE
        stores FILE's bytes under KEY through etcd's gateway (POST /v3/kv/put), reads it
        back with the very request wrk sends, prints that request's JSON body.
    httpbench.py put-lua OUT
        writes the request part of a wrk script that PUTs (POST /v3/kv/put) to 1,000
        distinct keys in turn, each value an instance record of about registration size:
        etcd's write rate beside registryd's durable registrations (row 4).
    httpbench.py hold HTTP_URL LINE_ADDR STREAMS
        opens STREAMS `GET /api/events/stream` connections and keeps them open, proves
        each delivers (one registration through the line protocol must reach all of
        them), prints "ready STREAMS", then fetches /metrics every second like a
        Prometheus scrape. On SIGTERM it prints one JSON line of what it saw and exits.

Only the standard library; one thread and a selector, so the holder costs the machine
next to nothing while the bench measures.
"""
import base64
import json
import selectors
import signal
import socket
import sys
import time
import urllib.request

STREAM_READ = 65536
READY_DEADLINE = 10.0           # seconds for every stream to open and see the probe event
SCRAPE_EVERY = 1.0              # seconds, Prometheus's scrape_interval in the issue
SCRAPE_TIMEOUT = 5.0


def split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def line_request(addr, obj):
    """One request on the line protocol; the decoded reply."""
    with socket.create_connection(split_addr(addr), timeout=5) as s:
        s.sendall(json.dumps(obj).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def prepare(line_addr, http_url, service, n, out):
    for i in range(n):
        r = line_request(line_addr, {"op": "register", "service": service,
                                     "host": "127.0.0.1", "port": 20000 + i,
                                     "check": "none", "tags": ["v1", "bench"],
                                     "description": "httpbench instance %d" % i})
        if not r.get("ok"):
            sys.exit("register failed: %s" % json.dumps(r)[:200])
    url = http_url.rstrip("/") + "/v1/health/service/%s?passing" % service
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read()
        if resp.status != 200:
            sys.exit("%s: status %d" % (url, resp.status))
    entries = json.loads(body)
    if len(entries) != n or any(e["Checks"][0]["Status"] != "passing" for e in entries):
        sys.exit("%s: %d entries, want %d passing" % (url, len(entries), n))
    with open(out, "wb") as f:
        f.write(body)
    print(len(body))


def get(url, size):
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            ok = resp.status == 200 and len(resp.read()) == size
    except OSError:
        ok = False
    sys.exit(0 if ok else 1)


def etcd_put(url, key, path):
    value = open(path, "rb").read()
    b64 = lambda b: base64.b64encode(b).decode()

    def post(endpoint, obj):
        req = urllib.request.Request(url.rstrip("/") + endpoint, json.dumps(obj).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    post("/v3/kv/put", {"key": b64(key.encode()), "value": b64(value)})
    # serializable: answered from the member's own store like registryd's from its
    # catalog, without a round of consensus (the fastest read etcd offers)
    rng = {"key": b64(key.encode()), "serializable": True}
    got = post("/v3/kv/range", rng)
    kvs = got.get("kvs") or []
    if len(kvs) != 1 or base64.b64decode(kvs[0]["value"]) != value:
        sys.exit("etcd range did not return the value put")
    print(json.dumps(rng, separators=(",", ":")))


def hold(http_url, line_addr, nstreams):
    host, port = split_addr(http_url.split("//", 1)[1].split("/", 1)[0])
    sel = selectors.DefaultSelector()
    streams = {}                # socket -> {"buf": bytes, "open": bool, "events": int}
    req = ("GET /api/events/stream HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
           "\r\n" % (host, port)).encode()
    for _ in range(nstreams):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(req)
        s.setblocking(False)
        streams[s] = {"buf": b"", "open": False, "events": 0}
        sel.register(s, selectors.EVENT_READ)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    closed = 0

    def pump(timeout):
        nonlocal closed
        for key, _ in sel.select(timeout):
            s = key.fileobj
            st = streams[s]
            try:
                data = s.recv(STREAM_READ)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                closed += 1
                continue
            st["buf"] += data
            if not st["open"] and b"\r\n\r\n" in st["buf"]:
                head, _, st["buf"] = st["buf"].partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200") or b"text/event-stream" not in head:
                    sys.exit("stream answered: %r" % head[:120])
                st["open"] = True
            if st["open"]:
                # count whole events with data (a blank line ends one; "retry:" and
                # comments are not events), keep the partial tail
                *blocks, st["buf"] = st["buf"].split(b"\n\n")
                st["events"] += sum(1 for b in blocks if b"data:" in b)

    deadline = time.monotonic() + READY_DEADLINE
    while not all(st["open"] for st in streams.values()):
        if time.monotonic() > deadline or closed:
            sys.exit("streams did not open (%d closed)" % closed)
        pump(0.1)
    # streams start "from now on": one registration must reach every one of them
    probe = line_request(line_addr, {"op": "register", "service": "httpbench-probe",
                                     "host": "127.0.0.1", "port": 1, "check": "none"})
    if not probe.get("ok"):
        sys.exit("probe register failed: %s" % json.dumps(probe)[:200])
    while not all(st["events"] for st in streams.values()):
        if time.monotonic() > deadline or closed:
            sys.exit("the probe event did not reach every stream")
        pump(0.1)
    print("ready %d" % len(streams), flush=True)

    scrapes, scrape_errors, scrape_max, metrics_bytes = 0, 0, 0.0, 0
    next_scrape = time.monotonic()
    murl = http_url.rstrip("/") + "/metrics"
    while not stop:
        now = time.monotonic()
        if now >= next_scrape:
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(murl, timeout=SCRAPE_TIMEOUT) as resp:
                    body = resp.read()
                    ok = resp.status == 200 and body.startswith(b"#")
            except OSError:
                ok, body = False, b""
            scrape_max = max(scrape_max, time.monotonic() - t0)
            scrapes += 1
            scrape_errors += not ok
            metrics_bytes = len(body)
            next_scrape += SCRAPE_EVERY
            continue
        pump(max(0.0, min(next_scrape - now, 0.2)))
    print(json.dumps({"streams": len(streams), "closed": closed, "scrapes": scrapes,
                      "scrape_errors": scrape_errors, "scrape_max_ms": scrape_max * 1e3,
                      "metrics_bytes": metrics_bytes,
                      "events": sum(st["events"] for st in streams.values())}), flush=True)


def put_lua(out):
    b64 = lambda b: base64.b64encode(b).decode()
    value = json.dumps({"id": "0123456789abcdef", "service": "bench-svc", "host": "127.0.0.1",
                        "port": 10000, "description": "a bench instance", "tags": "[]",
                        "ttl": 0, "check": 0, "token": "ab" * 32,
                        "registered_at": 1764547200000, "last_seen": 1764547200000,
                        "last_check": 0, "status": 0, "failures": 0, "maintenance": 0})
    bodies = [json.dumps({"key": b64(b"/bench/instances/%04d" % i), "value": b64(value.encode())})
              for i in range(1000)]
    with open(out, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write("local bodies = {\n%s\n}\n" % ",\n".join("'%s'" % b for b in bodies))
        f.write("local n = 0\nrequest = function()\n  n = n + 1\n"
                "  return wrk.format(nil, nil, nil, bodies[(n %% %d) + 1])\nend\n" % len(bodies))


def main(argv):
    cmd, args = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
    if cmd == "prepare" and len(args) == 5:
        prepare(args[0], args[1], args[2], int(args[3]), args[4])
    elif cmd == "get" and len(args) == 2:
        get(args[0], int(args[1]))
    elif cmd == "etcd-put" and len(args) == 3:
        etcd_put(*args)
    elif cmd == "put-lua" and len(args) == 1:
        put_lua(args[0])
    elif cmd == "hold" and len(args) == 3:
        hold(args[0], args[1], int(args[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
