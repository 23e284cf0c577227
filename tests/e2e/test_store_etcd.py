# SPDX-License-Identifier: BSD-2-Clause
"""test_store_etcd.py -- the store's conformance suite (tests/unit/test_store.c) against
the etcd backend: the same behaviours the SQLite and memory backends are held to, run by
the unit-test binary on a real etcd member this test starts (REG_TEST_ETCD)."""

import os
import re
import subprocess

from harness import BUILD, scaled
from etcd import require


def test_store_contract_on_etcd(h):
    require()
    c = h.etcd(1)
    exe = os.path.join(BUILD, "tests", "test_store")
    assert os.access(exe, os.X_OK), "%s not built" % exe
    env = dict(os.environ, REG_TEST_ETCD=c.endpoints)
    p = subprocess.run([exe], capture_output=True, timeout=scaled(120), env=env, cwd=h.tmp)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    assert p.returncode == 0, out[-3000:]
    ran = re.search(r"(\d+) test\(s\) run", out)
    assert ran and int(ran.group(1)) >= 25, out[-2000:]
    assert "etcd_batch_1000_puts" in out and "FAILED" not in out, out[-2000:]
