# SPDX-License-Identifier: BSD-2-Clause
# registry — build, run and test.
#
#   make            build everything (release: -O2 -g)
#   make run        start registryd + the sample services in the foreground
#   make check      build and run every test; ends with "N passed, N failed"
#   make check SANITIZE=1   the same under ASan + UBSan (separate build tree)
#   make bench      release build + the benchmark suite against a Redis peer
#   make bench-compare OLD=path/to/old/registryd   rows 1-2, old binary vs this build
#
# Every target that builds first installs missing Debian packages (scripts/deps.sh).

SHELL      := /bin/sh
VERSION    := 0.1.0
CC         ?= cc
PKGS       := libuv jansson sqlite3 libcrypto ldns libsystemd
BUILD      := build
SANFLAGS   :=
ifeq ($(SANITIZE),1)
BUILD      := build-san
SANFLAGS   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN       := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS     ?= -O2 -g
ALL_CFLAGS  = -std=c11 -D_GNU_SOURCE -DREGISTRY_VERSION='"$(VERSION)"' $(WARN) $(CFLAGS) $(SANFLAGS) \
              -Iregistry -Iclient -I$(BUILD)/gen $(PKG_CFLAGS) -MMD -MP
LDLIBS_ALL  = $(PKG_LIBS) -lpthread -lm

# --- sources -------------------------------------------------------------------------
REG_SRCS   := $(wildcard registry/base/*.c registry/core/*.c registry/store/*.c registry/front/*.c \
                        registry/front/*/*.c)
REG_OBJS   := $(REG_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/gen/schema_sql.o
CLI_SRCS   := $(filter-out client/regctl.c,$(wildcard client/*.c))
CLI_OBJS   := $(CLI_SRCS:%.c=$(BUILD)/%.o)
SVC_COMMON := $(filter-out services/tsserv.c services/sleepserv.c,$(wildcard services/*.c))
SVC_OBJS   := $(SVC_COMMON:%.c=$(BUILD)/%.o)
BENCH_SRCS := $(wildcard tests/bench/*.c)
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
SCHEMA     := $(sort $(wildcard schema/*.sql))

# Everything that compiles waits for this: on a fresh machine the packages are
# installed first, even under make -j.
DEPS_STAMP := $(BUILD)/.deps-ok

BINS := $(BUILD)/registryd $(BUILD)/regctl $(BUILD)/tsserv $(BUILD)/sleepserv $(BUILD)/regbench

.PHONY: all deps run demo check check-long bench bench-compare fuzz soak clean install valgrind
all: $(DEPS_STAMP) $(BINS) registry/registryd client/regctl services/tsserv services/sleepserv tests/bench/regbench

deps: $(DEPS_STAMP)

$(DEPS_STAMP): scripts/deps.sh
	@sh scripts/deps.sh
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

$(BUILD)/libregistry.a: $(REG_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libregclient.a: $(CLI_OBJS)
	rm -f $@ && ar rcs $@ $^

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

demo: all
	@sh scripts/demo.sh

# --- tests ---------------------------------------------------------------------------------
check: $(DEPS_STAMP) $(BINS) $(UNIT_BINS)
	@sh scripts/deps.sh bind9-dnsutils python3-dnspython
	@python3 tests/run.py --build $(BUILD)

check-long: check fuzz
	@sh tests/fuzz/run.sh 60

bench: all
	@sh scripts/deps.sh redis-server
	@sh tests/bench/bench.sh $(BUILD)

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

PREFIX ?= /usr/local
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BUILD)/registryd $(BUILD)/regctl $(BUILD)/tsserv $(BUILD)/sleepserv $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD)/libregclient.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 client/registry_client.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' client/registry-client.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/registry-client.pc

clean:
	rm -rf build build-san build-fuzz registry/registryd client/regctl services/tsserv services/sleepserv tests/bench/regbench

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
