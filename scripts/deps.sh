#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Installs the Debian packages the build and the tests need, and only those that are
# missing, so a fresh machine gets from `git clone` to `make run` with no manual step.
# Usage: scripts/deps.sh [PACKAGE...]  (no argument: the build + test set)
#
# No service is started by these installs. Debian's maintainer scripts start what a
# package ships (etcd-server starts etcd.service on 127.0.0.1:2379, the port
# `make run-cluster` wants for its own members; redis-server, nginx and prometheus take
# their ports too), while the tests and benches start their own instances. invoke-rc.d and
# deb-systemd-invoke ask /usr/sbin/policy-rc.d first, and 101 means "not allowed": one
# is put there for the install when there is none (a container usually has its own),
# and removed afterwards however this script ends. A distro unit that got started
# anyway (a policy-rc.d of someone else's that allows it) is stopped and disabled, only
# for a package this run installed.
set -e
pkgs="$*"
[ -n "$pkgs" ] || pkgs="gcc make pkg-config libuv1-dev libsqlite3-dev libjansson-dev libcmocka-dev libssl-dev libldns-dev libhttp-parser-dev libsystemd-dev python3"

missing_of() {
    m=""
    for p in "$@"; do
        st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case "$st" in *"install ok installed"*) ;; *) m="$m $p" ;; esac
    done
    echo "$m"
}

missing=$(missing_of $pkgs)
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

# Several `make` targets may install at once (bench, check, package): one install at a
# time, so that one run's policy-rc.d is not removed under another's install. Opened
# read-only (no O_CREAT), so a lock file another user created in /tmp still works.
lock=${TMPDIR:-/tmp}/registry-deps.lock
[ -e "$lock" ] || : > "$lock" 2>/dev/null || true
if [ -f "$lock" ] && [ -r "$lock" ]; then
    exec 9< "$lock"
    flock -w 900 9 2>/dev/null || true
    missing=$(missing_of $missing)   # what another run installed meanwhile
    [ -z "$missing" ] && exit 0
fi
echo "deps: installing$missing" >&2

POLICY=/usr/sbin/policy-rc.d
MARK="# scripts/deps.sh (registry): no service starts during its installs"
policy_ours=""
drop_policy() {
    if [ -n "$policy_ours" ] && grep -qF "$MARK" "$POLICY" 2>/dev/null; then
        $sudo rm -f "$POLICY"
    fi
    policy_ours=""
}
trap drop_policy EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n%s\nexit 101\n' "$MARK" | $sudo tee "$POLICY.new" >/dev/null
    $sudo chmod 755 "$POLICY.new"
    policy_ours=1
    $sudo mv "$POLICY.new" "$POLICY"
fi

# wait for dpkg's lock rather than fail on it (another install outside these scripts)
$sudo apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
$sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $missing >&2
drop_policy

# Units whose start would take a port the tests or make run-cluster use: PACKAGE:UNIT.
# The postinst also enabled the unit, which would start it at the next boot: disabled
# too (`sudo systemctl enable --now etcd` brings the distro's etcd back).
if [ -d /run/systemd/system ]; then
    for pu in etcd-server:etcd.service; do
        case " $missing " in *" ${pu%%:*} "*) ;; *) continue ;; esac
        u=${pu#*:}
        if systemctl is-active --quiet "$u" 2>/dev/null; then
            echo "deps: stopping $u, which the install of ${pu%%:*} started" >&2
            $sudo systemctl stop "$u" >&2 || true
        fi
        if systemctl is-enabled --quiet "$u" 2>/dev/null; then
            echo "deps: disabling $u (the tests and make run-cluster start their own)" >&2
            $sudo systemctl disable "$u" >/dev/null 2>&1 || true
        fi
    done
fi
