# SPDX-License-Identifier: BSD-2-Clause
# tests/fuzz/fuzz.mk — libFuzzer targets for the request decoder, the line framer, the
# DNS message layer, the HTTP parser boundary and the etcd backend's codec.
#
# Run from the top of the tree (the top Makefile's `make fuzz` does this after
# installing clang and libclang-rt):
#   make -f tests/fuzz/fuzz.mk              build, then fuzz each target FUZZ_RUNS inputs
#   make -f tests/fuzz/fuzz.mk build        build only (build-fuzz/fuzz_decode, fuzz_frame, fuzz_dns)
#   make -f tests/fuzz/fuzz.mk FUZZ_RUNS=100000000 FUZZ_SECONDS=3600
#   make -f tests/fuzz/fuzz.mk FUZZ_RUNS=0 FUZZ_SECONDS=300     time only: 300 s each
#
# What a run does (tests/fuzz/run.sh): per target, replay the regression inputs, then
# fuzz with FUZZ_WORKERS processes (default: the CPUs, at most 4) sharing one corpus
# until they have run FUZZ_RUNS inputs together (default 10,000,000; 0: no count) or
# FUZZ_SECONDS have passed (default 600: a safety bound, not the expected duration;
# hitting it is reported, not an error). It fails only on a crash or a failed check.
#
# Figures (the 2-core dev box, clang 14): `make fuzz` took 8 min 26 s with four targets
# on 2026-12-01 (decode 142 s, frame 40 s, dns 136 s, http 187 s: ~27,000 inputs/s a
# worker, http-parser itself not instrumented); earlier, with three targets and other
# work running, 3 min 41 s, when fuzz_decode ran its 10 M in 169 s (2 workers, ~30,000
# inputs/s each; ~45,000 alone: jansson and ASan's malloc, ~40 allocations per input),
# fuzz_frame in 52 s (~98,000 each). fuzz_frame used to run ~1,000 inputs/s: every read of the
# simulated connection re-ran proto_frame over the whole pending line (O(n^2) in tiny
# reads), each input malloc'ed a 256 KiB stream (an mmap under ASan) and reallocated
# the input buffer, and one small input could expand to 65,536 lines. The head of
# fuzz_frame.c says how it stays O(n) now.
#
# Each target compiles registry/front/line/proto.c (and core/req.c) itself, with coverage instrumentation and
# ASan + UBSan (any UB report aborts), instead of linking libregistry.a: proto.c needs
# nothing but jansson, and this keeps the fuzz build independent of the rest.
# The framer's harness (not proto.c) is built without trace-cmp: its comparisons are of
# lengths and positions, per line and per read, and tracing them cost about 30% of its
# time while guiding nothing (the input's counts are 2-byte big-endian RLE lengths).

CLANG        ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_RUNS    ?= 10000000
FUZZ_SECONDS ?= 600
FUZZ_WORKERS ?=
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
                -Iregistry $(shell pkg-config --cflags jansson 2>/dev/null)
FUZZ_LIBS    := $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)
FUZZ_TARGETS := $(FUZZ_BUILD)/fuzz_decode $(FUZZ_BUILD)/fuzz_frame $(FUZZ_BUILD)/fuzz_dns \
                $(FUZZ_BUILD)/fuzz_http $(FUZZ_BUILD)/fuzz_etcd
# Extra flags for one harness's own file (not for proto.c): FUZZ_HARNESS_CFLAGS_<target>.
FUZZ_HARNESS_CFLAGS_frame := -fno-sanitize-coverage=trace-cmp

.PHONY: run build
run: build
	@sh tests/fuzz/run.sh --no-build --runs $(FUZZ_RUNS) \
	    $(if $(FUZZ_WORKERS),--workers $(FUZZ_WORKERS)) $(FUZZ_SECONDS)

build: $(FUZZ_TARGETS)

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c registry/front/line/proto.c registry/front/line/proto.h \
                     registry/core/req.c registry/core/req.h tests/fuzz/fuzz.mk
	@mkdir -p $(FUZZ_BUILD)
	$(CLANG) $(FUZZ_CFLAGS) $(FUZZ_HARNESS_CFLAGS_$*) -c -o $@.o $<
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $@.o registry/front/line/proto.c registry/core/req.c $(FUZZ_LIBS)

# The DNS message layer: registry/front/dns/msg.c (and core/req.c, the service-name
# rule), plus ldns (a system library,
# not instrumented: coverage and checks are msg.c's; ldns is also the fuzzer's reference
# parser). This rule wins over the pattern rule above for this one target.
$(FUZZ_BUILD)/fuzz_dns: tests/fuzz/fuzz_dns.c registry/front/dns/msg.c registry/front/dns/msg.h \
                       registry/core/req.c registry/core/req.h tests/fuzz/fuzz.mk
	@mkdir -p $(FUZZ_BUILD)
	$(CLANG) $(FUZZ_CFLAGS) $(shell pkg-config --cflags ldns 2>/dev/null) -o $@ $< \
	    registry/front/dns/msg.c registry/core/req.c \
	    $(shell pkg-config --libs ldns 2>/dev/null || echo -lldns)

# The HTTP boundary: registry/front/http/parse.c (and base/util.c for util_parse_int and
# ubuf) over http-parser, a system library (not instrumented: the checks and coverage
# are parse.c's limits, header capture and target decoding).
$(FUZZ_BUILD)/fuzz_http: tests/fuzz/fuzz_http.c registry/front/http/parse.c \
                        registry/front/http/parse.h registry/base/util.c tests/fuzz/fuzz.mk
	@mkdir -p $(FUZZ_BUILD)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $< registry/front/http/parse.c registry/base/util.c \
	    -lhttp_parser $(shell pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto)

# The etcd backend's codec: registry/store/etcd_json.c (base64, the values under the
# registry's keys, the watch stream's framer) and base/util.c (ubuf, util_hex), over
# jansson and libcrypto's base64 (system libraries, not instrumented).
$(FUZZ_BUILD)/fuzz_etcd: tests/fuzz/fuzz_etcd.c registry/store/etcd_json.c \
                        registry/store/etcd_int.h registry/base/util.c tests/fuzz/fuzz.mk
	@mkdir -p $(FUZZ_BUILD)
	$(CLANG) $(FUZZ_CFLAGS) $(shell pkg-config --cflags libuv 2>/dev/null) -o $@ $< \
	    registry/store/etcd_json.c registry/base/util.c $(FUZZ_LIBS) \
	    $(shell pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto)
