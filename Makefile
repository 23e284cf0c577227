# SPDX-License-Identifier: BSD-2-Clause
# registry — build, run and test.
#
#   make            build everything (release: -O2 -g)
#   make run        start registryd + the sample services in the foreground
#   make run-cluster   the same on 3 registryd nodes sharing a 3-member etcd cluster
#   make check      build and run every test; ends with "N passed, N failed"
#   make check SANITIZE=1   the same under ASan + UBSan (separate build tree)
#   make check-browser      only the dashboard's tests in headless Chromium
#   make bench      release build + the benchmark suite against a Redis peer
#   make bench-compare OLD=path/to/old/registryd   rows 1-2, old binary vs this build
#
#   make install [PREFIX=/usr] [DESTDIR=DIR]   install (directories below); make uninstall
#   make package   Debian packages built in a temp copy of the tree, lintian, a smoke test
#
# `make` and `make install` never install packages: when something is missing they name
# the Debian packages and stop (scripts/check-deps.sh). run, run-cluster, demo, check,
# bench, soak, fuzz, valgrind and package install what is missing first (scripts/deps.sh,
# which starts none of the packages' services).
# CPPFLAGS, CFLAGS and LDFLAGS from the environment or the command line reach every
# compile and link (so do dpkg-buildflags' hardening flags).

SHELL      := /bin/sh
VERSION    := 0.1.0
CC         ?= cc
PKGS       := libuv jansson sqlite3 libcrypto ldns libsystemd libcurl
BUILD      := build
SANFLAGS   :=
ifeq ($(SANITIZE),1)
BUILD      := build-san
SANFLAGS   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

# A BUILD given as an absolute path inside the tree is made relative, so an object and
# its dependency file (.d) are named one way whoever calls make: a .d naming
# /abs/build/x.o says nothing of build/x.o, which then goes stale when a header changes
# (test_install runs make with the absolute path; a stale object once crashed registryd).
override BUILD := $(patsubst $(CURDIR)/%,%,$(BUILD))

PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN       := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS     ?= -O2 -g
ALL_CFLAGS  = -std=c11 -D_GNU_SOURCE -DREGISTRY_VERSION='"$(VERSION)"' $(CPPFLAGS) $(WARN) $(CFLAGS) $(SANFLAGS) \
              -Iregistry -Iclient -I$(BUILD)/gen $(PKG_CFLAGS) -MMD -MP
# LDFLAGS ride on every link line with the libraries; --as-needed keeps a program from
# depending on libraries it does not use (regctl needs no SQLite, no ldns).
# http-parser ships no pkg-config file (Debian's libhttp-parser-dev): linked by name.
LDLIBS_ALL  = -Wl,--as-needed $(LDFLAGS) $(PKG_LIBS) -lhttp_parser -lpthread -lm
# Libraries linked by name, as LIB=DEBIAN-PACKAGE, for scripts/check-deps.sh (a library
# added to the link line above goes here too, and into debian/control's Build-Depends).
NOPC_LIBS   := http_parser=libhttp-parser-dev

# --- sources -------------------------------------------------------------------------
REG_SRCS   := $(wildcard registry/base/*.c registry/core/*.c registry/store/*.c registry/front/*.c \
                        registry/front/*/*.c)
REG_OBJS   := $(REG_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/gen/schema_sql.o $(BUILD)/gen/ui_files.o
CLI_SRCS   := $(filter-out client/regctl.c,$(wildcard client/*.c))
CLI_OBJS   := $(CLI_SRCS:%.c=$(BUILD)/%.o)
SVC_COMMON := $(filter-out services/tsserv.c services/sleepserv.c,$(wildcard services/*.c))
SVC_OBJS   := $(SVC_COMMON:%.c=$(BUILD)/%.o)
BENCH_SRCS := $(wildcard tests/bench/*.c)
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
SCHEMA     := $(sort $(wildcard schema/*.sql))
UI_FILES   := $(sort $(filter-out ui/embed.sh,$(wildcard ui/*)))

# Everything that compiles waits for this: on a fresh machine the packages are
# installed first, even under make -j.
DEPS_STAMP := $(BUILD)/.deps-ok

BINS := $(BUILD)/registryd $(BUILD)/regctl $(BUILD)/tsserv $(BUILD)/sleepserv $(BUILD)/regbench

# The client library, static and shared. The soname's number changes with
# REGC_VERSION_MAJOR (client/registry_client.h) on an incompatible change.
SO_VERSION   := 0.1.0
SONAME       := libregclient.so.0
CLI_PIC_OBJS := $(CLI_SRCS:%.c=$(BUILD)/pic/%.o)
LIBS := $(BUILD)/libregclient.a $(BUILD)/libregclient.so.$(SO_VERSION) $(BUILD)/$(SONAME) \
        $(BUILD)/libregclient.so

.PHONY: all deps run run-cluster demo check check-long bench bench-compare fuzz soak clean install valgrind
.PHONY: uninstall package check-browser
all: $(DEPS_STAMP) $(BINS) $(LIBS) registry/registryd client/regctl services/tsserv services/sleepserv tests/bench/regbench

deps: $(DEPS_STAMP)

# Only these goals install missing packages; any other (make, make install) checks and
# names what is missing, then stops.
DEPS_GOALS := deps run run-cluster demo check check-browser check-long bench bench-compare soak fuzz valgrind package

$(DEPS_STAMP): scripts/deps.sh scripts/check-deps.sh Makefile
	@$(if $(filter $(DEPS_GOALS),$(MAKECMDGOALS)),sh scripts/deps.sh)
	@sh scripts/check-deps.sh $(CC) $(PKGS) $(NOPC_LIBS)
	@mkdir -p $(BUILD) && touch $@

# --- libraries and programs -------------------------------------------------------------
$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/gen/schema_sql.c: $(SCHEMA) schema/embed.sh | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	sh schema/embed.sh $(SCHEMA) > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/schema_sql.o: $(BUILD)/gen/schema_sql.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The dashboard (ui/): embedded like the schema, so registryd serves it with no file on disk.
$(BUILD)/gen/ui_files.c: $(UI_FILES) ui/embed.sh | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	sh ui/embed.sh $(UI_FILES) > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/ui_files.o: $(BUILD)/gen/ui_files.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libregistry.a: $(REG_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libregclient.a: $(CLI_OBJS)
	rm -f $@ && ar rcs $@ $^

# The shared library: the same sources compiled position-independent; the version
# script exports the public regc_* functions and nothing else.
$(BUILD)/pic/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

$(BUILD)/libregclient.so.$(SO_VERSION): $(CLI_PIC_OBJS) client/libregclient.map
	$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=client/libregclient.map \
	    -Wl,--no-undefined -o $@ $(CLI_PIC_OBJS) -Wl,--as-needed $(LDFLAGS) \
	    $(shell pkg-config --libs libuv jansson 2>/dev/null)

$(BUILD)/$(SONAME) $(BUILD)/libregclient.so: $(BUILD)/libregclient.so.$(SO_VERSION)
	ln -sf $(notdir $<) $@

$(BUILD)/registryd: $(BUILD)/registry/main.o $(BUILD)/libregistry.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/regctl: $(BUILD)/client/regctl.o $(BUILD)/libregclient.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tsserv: $(BUILD)/services/tsserv.o $(SVC_OBJS) $(BUILD)/libregclient.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/sleepserv: $(BUILD)/services/sleepserv.o $(SVC_OBJS) $(BUILD)/libregclient.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/regbench: $(BENCH_SRCS:%.c=$(BUILD)/%.o)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(BUILD)/libregistry.a $(BUILD)/libregclient.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL) -lcmocka

# The README's commands use these paths (release build only).
registry/registryd: $(BUILD)/registryd ; @cp $< $@
client/regctl: $(BUILD)/regctl ; @cp $< $@
services/tsserv: $(BUILD)/tsserv ; @cp $< $@
services/sleepserv: $(BUILD)/sleepserv ; @cp $< $@
tests/bench/regbench: $(BUILD)/regbench ; @cp $< $@

# --- running ------------------------------------------------------------------------------
run: all
	@sh scripts/run.sh

# Three registryd nodes on a 3-member etcd cluster, both sample services (fixed loopback
# ports, listed in scripts/run-cluster.sh); Debian's etcd-server is installed if missing.
run-cluster: all
	@sh scripts/deps.sh etcd-server
	@BUILD=$(BUILD) sh scripts/run-cluster.sh

demo: all
	@sh scripts/demo.sh

# --- tests ---------------------------------------------------------------------------------
# The dashboard's browser tests (tests/e2e/test_dashboard.py) need chromium,
# chromium-driver and python3-selenium; check-browser runs only those.
BROWSER_DEPS := chromium chromium-driver python3-selenium

check: $(DEPS_STAMP) $(BINS) $(LIBS) $(UNIT_BINS)
	@sh scripts/deps.sh bind9-dnsutils python3-dnspython g++ mandoc prometheus python3-consul \
	    etcd-server
	@sh scripts/deps.sh $(BROWSER_DEPS)
	@python3 tests/run.py --build $(BUILD)

check-browser: $(DEPS_STAMP) $(BINS)
	@sh scripts/deps.sh $(BROWSER_DEPS)
	@python3 tests/run.py --build $(BUILD) --e2e-only -k test_dashboard

check-long: check fuzz
	@sh tests/fuzz/run.sh 60

bench: all
	@sh scripts/deps.sh redis-server wrk nginx-light etcd-server valgrind
	@sh tests/bench/bench.sh $(BUILD)
	@python3 tests/bench/cluster.py $(BUILD)

# A hot-path change: make bench rows 1 and 2 for an old binary and this build, side by
# side in one run (e.g. OLD=/tmp/registryd.old, built from the commit before).
bench-compare: all
	@test -n "$(OLD)" || { echo "usage: make bench-compare OLD=path/to/old/registryd" >&2; exit 2; }
	@sh scripts/deps.sh redis-server
	@python3 tests/bench/compare.py "$(OLD)" $(BUILD)/registryd --regbench $(BUILD)/regbench

fuzz:
	@sh scripts/deps.sh clang libclang-rt-14-dev
	@$(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk

soak: all
	@sh tests/soak/soak.sh $(BUILD)

valgrind: all
	@sh scripts/deps.sh valgrind
	@VALGRIND=1 python3 tests/run.py --build $(BUILD) --e2e-only --quick

# --- installing ------------------------------------------------------------------------------
# Each directory can be set on the command line, e.g. for a Debian package (debian/rules):
#   make install DESTDIR=debian/tmp PREFIX=/usr LIBDIR=/usr/lib/x86_64-linux-gnu
# The sample services are not commands: they go to PKGLIBDIR. /etc and the systemd unit
# directory do not follow PREFIX. Files another part of the tree may not have yet (man
# pages, dist/) are installed when they exist.
PREFIX         ?= /usr/local
BINDIR         ?= $(PREFIX)/bin
SBINDIR        ?= $(PREFIX)/sbin
LIBDIR         ?= $(PREFIX)/lib
PKGLIBDIR      ?= $(PREFIX)/lib/registry
INCLUDEDIR     ?= $(PREFIX)/include
PKGCONFIGDIR   ?= $(LIBDIR)/pkgconfig
DATADIR        ?= $(PREFIX)/share
MANDIR         ?= $(DATADIR)/man
BASHCOMPDIR    ?= $(DATADIR)/bash-completion/completions
SYSCONFDIR     ?= /etc
SYSTEMDUNITDIR ?= /lib/systemd/system
HEADERS        := client/registry_client.h client/registry_json.h client/registry_helper.h
MANPAGES        = $(wildcard man/*.[1-8])
D               = $(DESTDIR)

# Builds what it installs, not `all`: no copies into the source tree (sudo make install).
install: $(DEPS_STAMP) $(BINS) $(LIBS)
	install -d $(D)$(BINDIR) $(D)$(SBINDIR) $(D)$(PKGLIBDIR) $(D)$(LIBDIR) $(D)$(INCLUDEDIR) \
	    $(D)$(PKGCONFIGDIR)
	install -m 755 $(BUILD)/regctl $(D)$(BINDIR)/
	install -m 755 $(BUILD)/registryd $(D)$(SBINDIR)/
	install -m 755 $(BUILD)/tsserv $(BUILD)/sleepserv $(D)$(PKGLIBDIR)/
	install -m 644 $(BUILD)/libregclient.a $(BUILD)/libregclient.so.$(SO_VERSION) $(D)$(LIBDIR)/
	ln -sf libregclient.so.$(SO_VERSION) $(D)$(LIBDIR)/$(SONAME)
	ln -sf libregclient.so.$(SO_VERSION) $(D)$(LIBDIR)/libregclient.so
	install -m 644 $(HEADERS) $(D)$(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' client/registry-client.pc.in > $(D)$(PKGCONFIGDIR)/registry-client.pc
	@set -e; for m in $(MANPAGES); do \
	    s=$${m##*.}; echo "install -m 644 $$m $(D)$(MANDIR)/man$$s/"; \
	    install -d $(D)$(MANDIR)/man$$s; install -m 644 $$m $(D)$(MANDIR)/man$$s/; done
	@set -e; if [ -f dist/registryd.service ]; then \
	    echo "install dist/registryd.service $(D)$(SYSTEMDUNITDIR)/"; install -d $(D)$(SYSTEMDUNITDIR); \
	    sed 's|/usr/sbin/registryd|$(SBINDIR)/registryd|g' dist/registryd.service \
	        > $(D)$(SYSTEMDUNITDIR)/registryd.service; chmod 644 $(D)$(SYSTEMDUNITDIR)/registryd.service; fi
	@set -e; if [ -f dist/registryd.logrotate ]; then \
	    echo "install dist/registryd.logrotate $(D)$(SYSCONFDIR)/logrotate.d/registryd"; \
	    install -D -m 644 dist/registryd.logrotate $(D)$(SYSCONFDIR)/logrotate.d/registryd; fi
	@set -e; if [ -f dist/registryd.default ]; then \
	    echo "install dist/registryd.default $(D)$(SYSCONFDIR)/default/registryd"; \
	    install -D -m 644 dist/registryd.default $(D)$(SYSCONFDIR)/default/registryd; fi
	@set -e; if [ -f dist/regctl.bash-completion ]; then \
	    echo "install dist/regctl.bash-completion $(D)$(BASHCOMPDIR)/regctl"; \
	    install -D -m 644 dist/regctl.bash-completion $(D)$(BASHCOMPDIR)/regctl; fi

# Removes what install put there (the same variables); directories only when left empty.
uninstall:
	rm -f $(D)$(BINDIR)/regctl $(D)$(SBINDIR)/registryd \
	    $(D)$(PKGLIBDIR)/tsserv $(D)$(PKGLIBDIR)/sleepserv \
	    $(D)$(LIBDIR)/libregclient.a $(D)$(LIBDIR)/libregclient.so.$(SO_VERSION) \
	    $(D)$(LIBDIR)/$(SONAME) $(D)$(LIBDIR)/libregclient.so \
	    $(HEADERS:client/%=$(D)$(INCLUDEDIR)/%) $(D)$(PKGCONFIGDIR)/registry-client.pc \
	    $(foreach m,$(MANPAGES),$(D)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m))) \
	    $(D)$(SYSTEMDUNITDIR)/registryd.service $(D)$(SYSCONFDIR)/logrotate.d/registryd \
	    $(D)$(SYSCONFDIR)/default/registryd $(D)$(BASHCOMPDIR)/regctl
	@rmdir $(D)$(PKGLIBDIR) 2>/dev/null || true

# Debian packages (debian/): built by dpkg-buildpackage in a temp copy of the tree (the
# tree stays clean), checked by lintian, unpacked into a throw-away root where the
# programs must run. The .debs and lintian's report end up in $(BUILD)/package/.
package:
	@sh scripts/deps.sh dpkg-dev debhelper fakeroot lintian
	@sh scripts/package.sh $(BUILD)/package

clean:
	rm -rf build build-san build-fuzz registry/registryd client/regctl services/tsserv services/sleepserv tests/bench/regbench

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
