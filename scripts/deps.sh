#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Installs the Debian packages the build and the tests need, and only those that are
# missing, so a fresh machine gets from `git clone` to `make run` with no manual step.
# Usage: scripts/deps.sh [PACKAGE...]  (no argument: the build + test set)
set -e
pkgs="$*"
[ -n "$pkgs" ] || pkgs="gcc make pkg-config libuv1-dev libsqlite3-dev libjansson-dev libcmocka-dev libssl-dev libldns-dev libhttp-parser-dev libsystemd-dev python3"
missing=""
for p in $pkgs; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# several `make` targets may install at once (bench, check, package): wait for dpkg's
# lock rather than fail on it
$sudo apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
$sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $missing >&2
