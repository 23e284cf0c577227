# tests/fuzz/fuzz.mk — libFuzzer targets for the request decoder and the line framer.
#
# Run from the top of the tree (the top Makefile's `make fuzz` does this after
# installing clang and libclang-rt):
#   make -f tests/fuzz/fuzz.mk              build, then fuzz each target FUZZ_SECONDS (20)
#   make -f tests/fuzz/fuzz.mk build        build only (build-fuzz/fuzz_decode, fuzz_frame)
#   make -f tests/fuzz/fuzz.mk FUZZ_SECONDS=300
#
# Each target compiles registry/front/line/proto.c (and core/req.c) itself, with coverage instrumentation and
# ASan + UBSan (any UB report aborts), instead of linking libregistry.a: proto.c needs
# nothing but jansson, and this keeps the fuzz build independent of the rest.

CLANG        ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 20
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
                -Iregistry $(shell pkg-config --cflags jansson 2>/dev/null)
FUZZ_LIBS    := $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)
FUZZ_TARGETS := $(FUZZ_BUILD)/fuzz_decode $(FUZZ_BUILD)/fuzz_frame

.PHONY: run build
run: build
	@sh tests/fuzz/run.sh --no-build $(FUZZ_SECONDS)

build: $(FUZZ_TARGETS)

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c registry/front/line/proto.c registry/front/line/proto.h \
                     registry/core/req.c registry/core/req.h tests/fuzz/fuzz.mk
	@mkdir -p $(FUZZ_BUILD)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $< registry/front/line/proto.c registry/core/req.c $(FUZZ_LIBS)
