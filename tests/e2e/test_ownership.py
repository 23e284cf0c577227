# SPDX-License-Identifier: BSD-2-Clause
"""test_ownership.py -- who may register an existing instance again (README: Security).

Registering the same (service, host, port) again replaces the instance's fields and its
token. It is allowed with the instance's current token, from the instance's own host, or
as an operator's "admin" request with the shared secret; anything else is `conflict`.
Another loopback address (127.0.0.2) plays another host.
"""

from harness import err, events, ok, register, still_serving, wait_for

OTHER = "127.0.0.2"


def lookup_all(c, service):
    return ok(c.request({"op": "lookup", "service": service, "all": True}))["instances"]


def test_takeover_from_another_host_is_a_conflict(h):
    reg = h.registry()
    owner = reg.conn()
    iid, token = register(owner, "pay", 7001, description="the real one", tags=["prod"])
    thief = reg.conn(source=OTHER)
    r = thief.request({"op": "register", "service": "pay", "host": "127.0.0.1", "port": 7001,
                       "check": "none", "description": "hijacked"})
    msg = err(r, "conflict", "re-register from another host without a token")
    for words in ('"token"', "127.0.0.1 itself", '"admin"'):
        assert words in msg, "the message names the rule (%s): %r" % (words, msg)
    # Nothing changed: fields, owner token, one instance.
    inst = lookup_all(owner, "pay")
    assert [(i["id"], i["description"], i["tags"]) for i in inst] == [(iid, "the real one", ["prod"])], inst
    ok(owner.request({"op": "heartbeat", "id": iid, "token": token}), "owner heartbeat")
    err(thief.request({"op": "deregister", "id": iid, "token": "0" * 32}), "unauthorized")
    still_serving(thief)


def test_conflict_is_logged(h):
    reg = h.registry()
    owner = reg.conn()
    iid, _ = register(owner, "pay", 7002)
    thief = reg.conn(source=OTHER)
    err(thief.request({"op": "register", "service": "pay", "host": "127.0.0.1", "port": 7002,
                       "check": "none"}), "conflict")

    def logged():
        with open(reg.log) as f:
            return [l for l in f if '"event":"conflict"' in l]
    lines = wait_for(logged, msg="a conflict line in the log")
    assert len(lines) == 1 and iid in lines[0] and OTHER in lines[0], lines


def test_current_token_allows_an_update_from_anywhere(h):
    reg = h.registry()
    owner = reg.conn()
    iid, token = register(owner, "pay", 7003, description="v1")
    mover = reg.conn(source=OTHER)
    r = ok(mover.request({"op": "register", "service": "pay", "host": "127.0.0.1", "port": 7003,
                          "check": "none", "description": "v2", "token": token}))
    assert r["id"] == iid and r["token"] != token, r
    assert lookup_all(owner, "pay")[0]["description"] == "v2"
    # The old token stopped working; the new one works.
    err(owner.request({"op": "heartbeat", "id": iid, "token": token}), "unauthorized")
    ok(owner.request({"op": "heartbeat", "id": iid, "token": r["token"]}))
    # A wrong token from another host is still a conflict.
    err(mover.request({"op": "register", "service": "pay", "host": "127.0.0.1", "port": 7003,
                       "check": "none", "token": token}), "conflict")


def test_own_host_may_register_again_without_its_token(h):
    """A restarted service that lost its token registers itself again."""
    reg = h.registry()
    first = reg.conn()
    iid, token = register(first, "pay", 7004, description="before restart")
    again = reg.conn()
    r = ok(again.request({"op": "register", "service": "pay", "host": "127.0.0.1", "port": 7004,
                          "check": "none", "description": "after restart"}))
    assert r["id"] == iid and r["token"] != token, r
    # Also with the host omitted (it means the address the request came from).
    r2 = ok(again.request({"op": "register", "service": "pay", "port": 7004, "check": "none"}))
    assert r2["id"] == iid, r2


def test_shared_secret_does_not_make_an_owner(h):
    secret = h.path("secret")
    with open(secret, "w") as f:
        f.write("s3cret\n")
    reg = h.registry("--auth-token-file", secret)
    owner = reg.conn()
    iid, token = register(owner, "pay", 7005, description="mine", auth="s3cret")
    other = reg.conn(source=OTHER)
    base = {"op": "register", "service": "pay", "host": "127.0.0.1", "port": 7005,
            "check": "none", "description": "theirs", "auth": "s3cret"}
    err(other.request(base), "conflict", "the secret alone")
    assert lookup_all(owner, "pay")[0]["description"] == "mine"
    # admin needs the right secret...
    err(other.request(dict(base, admin=True, auth="wrong")), "unauthorized")
    # ... and with it, an operator may update someone else's instance.
    r = ok(other.request(dict(base, admin=True)), "admin update")
    assert r["id"] == iid, r
    assert lookup_all(owner, "pay")[0]["description"] == "theirs"
    err(owner.request({"op": "heartbeat", "id": iid, "token": token}), "unauthorized")


def test_admin_without_a_registry_secret_is_refused(h):
    reg = h.registry()
    register(reg.conn(), "pay", 7006)
    other = reg.conn(source=OTHER)
    msg = err(other.request({"op": "register", "service": "pay", "host": "127.0.0.1",
                             "port": 7006, "check": "none", "admin": True}), "conflict")
    assert "--auth-token-file" in msg, msg
    err(other.request({"op": "register", "service": "pay", "port": 7006, "admin": "yes"}),
        "bad_request")


def test_regctl_register_with_token_and_admin(h):
    reg = h.registry()
    iid, token = register(reg.conn(), "pay", 7007)
    r = h.regctl("register", "pay", "127.0.0.1", "7007", "--check", "none", "--token", token,
                 registry=reg.addr)
    assert r.rc == 0, r
    new_id, new_token = r.out.split()
    assert new_id == iid and new_token != token
    r = h.regctl("register", "--help")
    assert r.rc == 0 and "--token" in r.out and "--admin" in r.out, r


def test_registrant_may_register_again(h):
    """The client address that registered an instance may register it again without its
    token (a Consul client re-registers its ID at every start); another address may not."""
    reg = h.registry()
    a = reg.conn(source="127.0.0.3")
    base = {"op": "register", "service": "web", "host": "127.0.0.9", "port": 7010,
            "check": "none"}
    first = ok(a.request(base))
    again = ok(a.request(dict(base, description="v2")))
    assert again["id"] == first["id"] and again["token"] != first["token"], (first, again)
    other = reg.conn(source="127.0.0.4")
    err(other.request(dict(base, description="v3")), "conflict", "another address")
