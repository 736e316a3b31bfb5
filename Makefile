# ocireg - top-level Makefile (GNU make).
#
# Targets:
#   make              build every binary into $(BUILD)/ (ocireg, ocirun-lite, regbench, conformance,
#                     gcbench)
#   make run          install deps, build, serve on 127.0.0.1:5000 with data under ./data
#   make test         install deps, build, run every test (unit, integration, conformance, skopeo)
#   make check        the same tests against an ASan+UBSan build in build-asan/
#   make bench        side-by-side benchmark against the reference registry (BENCH=full for full mode)
#   make conformance  run the conformance program against a freshly started ocireg
#   make format       clang-format every C file
#   make fuzz         build the libFuzzer targets (tests/fuzz/) with clang into build-fuzz/
#                     and run each for FUZZ_SECONDS; fails on any crash (scripts/fuzz.sh)
#   make image        build the container image localhost/ocireg:latest from the Dockerfile
#                     with podman (else docker); makes a local Debian 12 base first when
#                     the store has none (scripts/build-image.sh, make-base-image.sh)
#   make test-image   make image, then run it and check it: healthy, non-root, a push and
#                     a pull through it with skopeo (scripts/test-image.sh)
#   make clean        remove build/, build-asan/ and build-fuzz/ (and make image's store)
#
# Knobs (make VAR=value):
#   BUILD      output folder (default build)
#   CC         compiler: gcc and clang both build warning-free (e.g. make CC=clang)
#   OPT        optimisation flags (default -O2; -g is always given)
#   CFLAGS     extra compiler flags, appended after the project's own (which are
#              always applied), so they win: make CFLAGS=-O0 builds without
#              optimisation and keeps -Wall, -std=gnu11, the include paths, ...
#   CPPFLAGS, LDFLAGS, LDLIBS   likewise appended to the project's own
#   HARDEN     1 (default) = -fstack-protector-strong, -D_FORTIFY_SOURCE=2 (only
#              when optimising and not with SANITIZE=1, which it conflicts with),
#              PIE and full RELRO (-z relro -z now); 0 = none of them
#   SANITIZE   1 = build with -fsanitize=address,undefined (make check sets it)
#   NODEPS     1 = skip scripts/install-deps.sh (for machines set up by hand)
#   TESTS      glob of test names for `make test` (default: all), e.g. TESTS='storage*'
#   FUZZ_SECONDS  seconds each fuzz target runs in `make fuzz` (default 60)
#   FUZZ_TARGETS  which targets `make fuzz` runs (default: all), e.g. FUZZ_TARGETS='http range'
#   FUZZ_CC       compiler of the fuzz build (default clang; libFuzzer needs it)
#   FUZZ_TIMEOUT, FUZZ_RSS_MB, FUZZ_FLAGS  per-input timeout (s), memory limit (MiB)
#              and extra libFuzzer flags (scripts/fuzz.sh)
#
# The libraries are found with pkg-config when something is compiled or linked:
# a missing one stops the build with its name (clean and format need none).

BUILD    ?= build
OPT      ?= -O2
SANITIZE ?= 0
HARDEN   ?= 1

PKGS := libevent_pthreads libevent openssl jansson sqlite3 libarchive liburing libcurl
# Expanded once, on first use: only recipes that compile or link use them, so
# clean, format and deps run on a machine without the packages (make test
# installs them first, then builds in a sub-make).
pkg_missing = $(eval pkg_missing := $$(shell for p in $$(PKGS); do \
                  pkg-config --exists $$$$p || echo $$$$p; done))$(pkg_missing)
pkg_config = $(if $(pkg_missing),$(error pkg-config cannot find: $(pkg_missing) \
                 (install their -dev packages: sh scripts/install-deps.sh)),$(shell pkg-config $(1) $(PKGS)))
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(call pkg_config,--cflags))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(call pkg_config,--libs))$(PKG_LIBS)

# gcc's -Wformat-truncation flags snprintf calls whose truncation is handled
# (the result is checked); clang has no such warning and, under -Werror,
# refuses the unknown option. Probed once per make run.
cc_accepts = $(shell $(CC) -Werror $(1) -E -x c /dev/null >/dev/null 2>&1 && echo $(1))
WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 \
        -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
        -Wvla -Wpointer-arith -Wundef $(call cc_accepts,-Wformat-truncation=0)

# FORTIFY needs optimisation (glibc warns without it, and -Werror makes that an
# error) and conflicts with ASan's own interceptors; the last -O given wins.
opt_level := $(lastword $(filter -O%,$(OPT) $(CFLAGS)))
ifeq ($(HARDEN),1)
HARDEN_CFLAGS  := -fstack-protector-strong -fPIE
HARDEN_LDFLAGS := -pie -Wl,-z,relro,-z,now
ifneq ($(SANITIZE),1)
ifneq ($(filter-out -O0,$(opt_level)),)
HARDEN_CFLAGS  += -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=2
endif
endif
endif
ifeq ($(SANITIZE),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

# git's ALL_CFLAGS: the project's flags first, then the user's, which win.
ALL_CFLAGS  = $(OPT) -g -std=gnu11 $(WARN) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I. \
              $(PKG_CFLAGS) -fno-strict-aliasing -pthread $(HARDEN_CFLAGS) $(SAN_FLAGS) \
              $(CPPFLAGS) $(CFLAGS)
# link only what each binary uses: fewer shared objects = faster exec (ocirun-lite run)
ALL_LDFLAGS = -Wl,--as-needed $(HARDEN_LDFLAGS) $(SAN_FLAGS) $(LDFLAGS)
ALL_LDLIBS  = $(PKG_LIBS) -lhttp_parser -lcap -lcrypt -pthread -lm $(LDLIBS)

# ---- sources -------------------------------------------------------------
CORE_SRC := $(wildcard common/*.c storage/*.c auth/*.c gc/*.c server/*.c)
CORE_SRC := $(filter-out server/main.c,$(CORE_SRC))
RUN_SRC  := $(filter-out tools/ocirun-lite/main.c,$(wildcard tools/ocirun-lite/*.c))
BENCH_SRC:= $(filter-out tools/regbench/main.c,$(wildcard tools/regbench/*.c))
CONF_SRC := $(filter-out conformance/main.c,$(wildcard conformance/*.c))
TLIB_SRC := $(wildcard tests/lib/*.c)
UNIT_SRC := $(wildcard tests/unit/*_test.c)
INTEG_SRC:= $(wildcard tests/integration/*_test.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIBCORE  := $(BUILD)/lib/libocireg.a
LIBRUN   := $(BUILD)/lib/libocirun.a
LIBBENCH := $(BUILD)/lib/libregbench.a
LIBCONF  := $(BUILD)/lib/libconformance.a
LIBTEST  := $(BUILD)/lib/libtestlib.a

BINS := $(BUILD)/ocireg $(BUILD)/ocirun-lite $(BUILD)/regbench $(BUILD)/conformance $(BUILD)/gcbench
UNIT_BINS  := $(patsubst tests/unit/%_test.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
INTEG_BINS := $(patsubst tests/integration/%_test.c,$(BUILD)/tests/integration/%,$(INTEG_SRC))

.PHONY: all deps run test check bench conformance format clean tests image test-image
# test objects are intermediate files to make; keep them so a rebuild only
# compiles what changed
.SECONDARY:
all: $(BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

define mklib
$(1): $(call obj,$(2))
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	$$(AR) rcs $$@ $$^
endef
$(eval $(call mklib,$(LIBCORE),$(CORE_SRC)))
$(eval $(call mklib,$(LIBRUN),$(RUN_SRC)))
$(eval $(call mklib,$(LIBBENCH),$(BENCH_SRC)))
$(eval $(call mklib,$(LIBCONF),$(CONF_SRC)))
$(eval $(call mklib,$(LIBTEST),$(TLIB_SRC)))

# archives may be empty early on; ar handles that, the linker ignores them
# regbench's login parses challenges with ocirun-lite's regauth: LIBBENCH before LIBRUN
ALL_LIBS := $(LIBTEST) $(LIBBENCH) $(LIBRUN) $(LIBCONF) $(LIBCORE)

$(BUILD)/ocireg: $(call obj,server/main.c) $(LIBCORE)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(ALL_LDLIBS)
$(BUILD)/ocirun-lite: $(call obj,tools/ocirun-lite/main.c) $(LIBRUN) $(LIBCORE)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(ALL_LDLIBS)
$(BUILD)/regbench: $(call obj,tools/regbench/main.c) $(LIBBENCH) $(LIBRUN) $(LIBCORE)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(ALL_LDLIBS)
$(BUILD)/gcbench: $(call obj,tools/gcbench/main.c) $(LIBCORE)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(ALL_LDLIBS)
$(BUILD)/conformance: $(call obj,conformance/main.c) $(LIBCONF)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%_test.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(ALL_LDLIBS) -lcriterion
$(BUILD)/tests/integration/%: $(BUILD)/obj/tests/integration/%_test.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(ALL_LDLIBS) -lcriterion

tests: $(BINS) $(UNIT_BINS) $(INTEG_BINS)

deps:
ifneq ($(NODEPS),1)
	@sh scripts/install-deps.sh
endif

# `make run`: serve on 127.0.0.1:5000 with data under ./data (no config file needed)
run: deps
	@$(MAKE) --no-print-directory all
	./$(BUILD)/ocireg serve

test: deps
	@$(MAKE) --no-print-directory tests
	@BUILD=$(BUILD) sh tests/run-all.sh $(TESTS)

check: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SANITIZE=1 OPT=-O1 tests
	@BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 sh tests/run-all.sh $(TESTS)

bench: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh scripts/bench.sh $(BENCH)
	@if [ "$$(id -u)" = 0 ]; then \
	    BUILD=$(BUILD) N=$$( [ "$(BENCH)" = full ] && echo 30 || echo 10 ) bash scripts/bench-ocirun.sh; \
	else echo "ocirun-lite benchmark skipped: needs root"; fi

conformance: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh tests/shell/conformance.sh

# the image compiles inside its build stage: nothing of $(BUILD) goes in
image: deps
	@bash scripts/build-image.sh

test-image: image
	@bash scripts/test-image.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz

# ---- fuzzing (libFuzzer) -------------------------------------------------
# The core library is compiled again by clang with the sanitizers and
# fuzzer-no-link coverage into build-fuzz/ (never mixed with build/ or
# build-asan/); each tests/fuzz/<name>_fuzz.c links with -fsanitize=fuzzer
# into build-fuzz/fuzz/<name>_fuzz. scripts/fuzz.sh runs them.
FUZZ_BUILD   := build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer
FUZZ_CFLAGS   = -O1 -g -std=gnu11 $(filter-out -Wformat-truncation=0,$(WARN)) -D_GNU_SOURCE \
                -D_FILE_OFFSET_BITS=64 -I. $(PKG_CFLAGS) -fno-strict-aliasing -pthread \
                $(FUZZ_SAN)
FUZZ_SRC     := $(wildcard tests/fuzz/*_fuzz.c)
FUZZ_BINS    := $(patsubst tests/fuzz/%_fuzz.c,$(FUZZ_BUILD)/fuzz/%_fuzz,$(FUZZ_SRC))
FUZZ_LIB     := $(FUZZ_BUILD)/lib/libocireg.a
FUZZ_HELPER  := $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_http.o

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
$(FUZZ_LIB): $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(CORE_SRC))
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) rcs $@ $^
$(FUZZ_BUILD)/fuzz/%_fuzz: $(FUZZ_BUILD)/obj/tests/fuzz/%_fuzz.o $(FUZZ_HELPER) $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(ALL_LDLIBS)

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BINS)

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@BUILD_FUZZ=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) sh scripts/fuzz.sh $(FUZZ_TARGETS)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
