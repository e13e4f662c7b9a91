# dsup — build, test, demo, bench, install.
#
#   make            build build/dsup-node and build/libdsup.a (installs nothing)
#   make deps       install the missing Debian packages (apt-get; DSUP_NO_APT=1: only check)
#   make test       make deps, build, check the exported symbols and the installed
#                   library, then run every test in both lanes: OTP 25 (Debian 12)
#                   and OTP 27 (Debian 13, under build/otp27); one lane alone:
#                   make test OTP=25 / OTP=27
#   make otp27      set up the OTP 27 + Elixir 1.18 toolchain (scripts/otp27.sh)
#   make demo       make deps, build, run the mixed-cluster demo
#   make bench      run the benchmarks (dsup beside a pure-BEAM baseline)
#   make fuzz       run the libFuzzer targets (frame decoder, handshake) for FUZZ_SECONDS each
#   make sanitize   build and run the unit + CT suites under ASan/UBSan
#   make valgrind   run the unit tests under valgrind
#   make install    install binary, header, library, pkg-config file under PREFIX
#   make examples   build the example plugin and custom node into build/examples
#   make install-check  install into a temp dir, build examples/custom_main from it
#   make chaos      network-namespace chaos run: partitions, kills, stops (root)

.DEFAULT_GOAL := all
PREFIX  ?= /usr/local
BUILD   ?= build
CC      ?= cc
OPT     ?= -O2
SAN     ?=
FUZZ_SECONDS ?= 30
OTP     ?= 25 27

# The version, one source of truth: VERSION (also read by scripts/dsup.pc.in
# through `make install` and by elixir_shim/mix.exs).
DSUP_VERSION := $(shell cat VERSION)
ERL ?= erl

# Where erl_interface lives is asked of erl itself (no hard-coded version path).
# Plain `make` installs nothing: when erl is missing it says to run `make deps`.
# The goals that promise a fresh machine works (test, demo, bench, fuzz, deps)
# install the missing Debian packages first (not with DSUP_NO_APT=1).
SETUP_GOALS := deps test demo bench fuzz
ifneq ($(filter-out clean deps,$(or $(MAKECMDGOALS),all)),)
include $(BUILD)/config.mk
endif
$(BUILD)/config.mk:
	@mkdir -p $(BUILD)
	@$(if $(filter $(SETUP_GOALS),$(MAKECMDGOALS)),scripts/install-deps.sh)
	@command -v $(ERL) >/dev/null 2>&1 || { echo "make: '$(ERL)' not found: install Erlang/OTP (on Debian: make deps) or put erl on PATH (ERL=/path/to/erl)" >&2; exit 1; }
	@$(ERL) -noshell -eval 'io:format("EI_DIR := ~s~nOTP_RELEASE := ~s~n", [code:lib_dir(erl_interface), erlang:system_info(otp_release)]), halt().' > $@.tmp && mv $@.tmp $@

# c_src/ is one folder per layer, lowest first (README, Architecture): a
# file includes headers of its own layer or below, by name
# (scripts/check-layers.sh enforces it).
LAYERS  := base wire runtime services workers http cli
LAYER_INC := -Ic_src $(addprefix -Ic_src/,$(LAYERS))

# Hidden by default: only what include/dsup.h marks DSUP_EXTERN is exported.
CFLAGS  += -std=gnu11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -fPIC -fvisibility=hidden $(SAN) \
           -Iinclude $(LAYER_INC) -I$(EI_DIR)/include -DDSUP_OTP_RELEASE=$(OTP_RELEASE) \
           -DDSUP_VERSION='"$(DSUP_VERSION)"'
# Invariant asserts (proc table, intern refcounts, connection states, pg
# counts, child table vs pg) stay on in every build, tests and installs alike:
# they are cheap and guard our own bookkeeping, never a peer's input.
# ASSERTS=no compiles them out (-DNDEBUG).
ASSERTS ?= yes
ifeq ($(ASSERTS),no)
CFLAGS  += -DNDEBUG
endif
LDFLAGS += $(SAN) -rdynamic
# libei whole: plugins (--load) may call any ei function, not only the ones
# the node itself happens to use.
LDLIBS  += -L$(EI_DIR)/lib -luv -lpthread -ldl -lm
NODE_EI := -Wl,--whole-archive $(EI_DIR)/lib/libei.a -Wl,--no-whole-archive
TEST_EI := -L$(EI_DIR)/lib -lei

# HTTP endpoints (--http): served by h2o when libh2o-dev is there (HTTP=auto),
# or forced: HTTP=yes fails without it, HTTP=no builds a node that refuses --http.
# The renderers need no library; only server_h2o.c and the page do.
HTTP    ?= auto
ifeq ($(HTTP),auto)
HTTP    := $(shell pkg-config --exists libh2o 2>/dev/null && echo yes || echo no)
endif
HTTP_SRC := $(filter-out c_src/http/server_%.c,$(wildcard c_src/http/*.c))
ifeq ($(HTTP),yes)
ifneq ($(shell pkg-config --exists libh2o 2>/dev/null && echo ok),ok)
ifneq ($(wildcard $(BUILD)/config.mk),)
$(error HTTP=yes but pkg-config finds no libh2o: apt-get install libh2o-dev, or build with HTTP=no)
endif
endif
HTTP_SRC  += c_src/http/server_h2o.c
HTTP_GEN  := $(BUILD)/obj/gen/status_html.o
HTTP_LIBS := $(shell pkg-config --libs libh2o)
else
HTTP_SRC  += c_src/http/server_none.c
HTTP_GEN  :=
HTTP_LIBS :=
endif
LDLIBS  := $(HTTP_LIBS) $(LDLIBS)

LIB_SRC  := $(filter-out c_src/cli/main.c,$(wildcard $(addprefix c_src/,$(addsuffix /*.c,$(filter-out http,$(LAYERS)))))) $(HTTP_SRC)
LIB_OBJ  := $(LIB_SRC:c_src/%.c=$(BUILD)/obj/%.o) $(HTTP_GEN)
UNIT_SRC := $(wildcard test/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:test/unit/%.c=$(BUILD)/test/%)

.PHONY: all build deps test unit check-layers check-symbols ct shim-test demo demo-fast bench-quick bench bench-scale8 fuzz sanitize valgrind install install-check examples clean otp27
.PHONY: examples install-check
all build: $(BUILD)/dsup-node $(BUILD)/libdsup.a

deps:
	@scripts/install-deps.sh

$(BUILD)/obj/%.o: c_src/%.c $(wildcard c_src/*/*.h include/*.h) $(BUILD)/config.mk
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The status page is a C string made from c_src/http/status.html at build time.
$(BUILD)/gen/status_html.c: c_src/http/status.html
	@mkdir -p $(dir $@)
	@{ echo '#include <stddef.h>'; echo 'const char dsup_status_html[] ='; \
	   sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; \
	   echo ';'; echo 'const size_t dsup_status_html_len = sizeof dsup_status_html - 1;'; } > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/status_html.o: $(BUILD)/gen/status_html.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/cli/cli.o: VERSION

# The installed library is sealed: its objects are linked into one and every
# hidden symbol is made local, so only the public API is global (scripts/
# check-symbols.sh verifies it). Unit tests link the unsealed archive.
# Switching HTTP in the same build directory relinks the libraries.
HTTP_STAMP := $(BUILD)/obj/http_$(HTTP).stamp
$(HTTP_STAMP):
	@mkdir -p $(dir $@)
	@rm -f $(BUILD)/obj/http_*.stamp
	@touch $@

$(BUILD)/libdsup.a: $(LIB_OBJ) $(HTTP_STAMP)
	@rm -f $@ $(BUILD)/obj/dsup_sealed.o
	ld -r -o $(BUILD)/obj/dsup_sealed.o $(filter %.o,$^)
	objcopy --localize-hidden $(BUILD)/obj/dsup_sealed.o
	ar rcs $@ $(BUILD)/obj/dsup_sealed.o

$(BUILD)/libdsup_internal.a: $(LIB_OBJ) $(HTTP_STAMP)
	@rm -f $@
	ar rcs $@ $(filter %.o,$^)

$(BUILD)/dsup-node: $(BUILD)/obj/cli/main.o $(BUILD)/libdsup.a
	$(CC) $(LDFLAGS) -o $@ $^ $(NODE_EI) $(LDLIBS)

$(BUILD)/test/%: test/unit/%.c test/unit/unit_helpers.h $(BUILD)/libdsup_internal.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itest/unit $(LDFLAGS) -o $@ $< $(BUILD)/libdsup_internal.a $(TEST_EI) $(LDLIBS) -lcmocka

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# c_src/ layers: no include of a higher layer (README, Architecture).
check-layers:
	@scripts/check-layers.sh

# The library and the binary export the public API and nothing else.
check-symbols: all
	@scripts/check-symbols.sh $(BUILD) $(EI_DIR)

ct: all examples
	@scripts/run-ct.sh

shim-test: all examples
	@elixir_shim/run-tests.sh

demo-fast: all
	@DEMO_FAST=1 scripts/demo.sh

bench-quick: all
	@bench/run.sh --quick

# The test matrix (scripts/test-lanes.sh): every lane in $(OTP) runs even when
# another fails; a failure in any lane fails make test. The library's surface
# (check-symbols, install-check) does not depend on the lane: checked once.
test: deps all examples $(UNIT_BIN) check-layers check-symbols install-check
	@scripts/test-lanes.sh $(OTP)

otp27:
	@scripts/otp27.sh
test: chaos-quick

demo: deps all
	@scripts/demo.sh

bench: deps all
	@bench/run.sh

bench-scale8: deps all
	@bench/run.sh --scale8

# The target needs only the codec (no ei, no libuv). New inputs go to
# $(BUILD)/fuzz/corpus; test/fuzz/corpus holds the seeds (erl-made frames,
# regenerate with DSUP_FUZZ_CORPUS=test/fuzz/corpus build/test/test_ctrl).
FUZZ_SRC := test/fuzz/fuzz_frame.c c_src/wire/ctrl.c c_src/wire/term_skip.c c_src/wire/term_canon.c c_src/base/buf.c c_src/base/xalloc.c
# The handshake state machine with the node stubbed (seeds: test/fuzz/hs_corpus).
FUZZ_HS_SRC := test/fuzz/fuzz_handshake.c c_src/runtime/handshake.c c_src/base/md5.c
fuzz: deps
	@scripts/install-deps.sh clang libclang-rt-14-dev
	@mkdir -p $(BUILD)/fuzz/corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -Iinclude $(LAYER_INC) -o $(BUILD)/fuzz/fuzz_frame $(FUZZ_SRC)
	$(BUILD)/fuzz/fuzz_frame -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 \
	  -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus test/fuzz/corpus
	@mkdir -p $(BUILD)/fuzz/hs_corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -Iinclude $(LAYER_INC) -I$(EI_DIR)/include -o $(BUILD)/fuzz/fuzz_handshake $(FUZZ_HS_SRC) -luv
	$(BUILD)/fuzz/fuzz_handshake -max_total_time=$(FUZZ_SECONDS) -max_len=2048 -print_final_stats=1 \
	  -artifact_prefix=$(BUILD)/fuzz/hs_ $(BUILD)/fuzz/hs_corpus test/fuzz/hs_corpus

sanitize:
	$(MAKE) BUILD=build/san OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" unit
	DSUP_NODE=$(CURDIR)/build/san/dsup-node $(MAKE) BUILD=build/san OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" ct

valgrind: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do valgrind -q --error-exitcode=1 --leak-check=full $$t; done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/dsup-node $(DESTDIR)$(PREFIX)/bin/
	install -m 644 include/dsup.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libdsup.a $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@EI_DIR@|$(EI_DIR)|g' -e 's|@VERSION@|$(DSUP_VERSION)|g' -e 's|@HTTP_LIBS@|$(HTTP_LIBS)|g' \
	  scripts/dsup.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/dsup.pc

# Examples are built against the public header only (include/, no c_src/).
EX_DIR    := $(BUILD)/examples
EX_CFLAGS := -std=gnu11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -fPIC $(SAN) \
             -Iinclude -I$(EI_DIR)/include
EX_PLUGIN := $(wildcard examples/plugin/*.c)

examples: $(EX_DIR)/dsup_examples.so $(EX_DIR)/bad_nosym.so $(EX_DIR)/bad_abi.so $(EX_DIR)/dsup-custom \
          $(EX_DIR)/abi1_plugin.so $(EX_DIR)/flaky_plugin.so

$(EX_DIR)/dsup_examples.so: $(EX_PLUGIN) examples/plugin/examples.h include/dsup.h $(BUILD)/config.mk
	@mkdir -p $(dir $@)
	$(CC) $(EX_CFLAGS) -shared -o $@ $(EX_PLUGIN)

$(EX_DIR)/bad_%.so: examples/bad_plugins/bad_%.c include/dsup.h $(BUILD)/config.mk
	@mkdir -p $(dir $@)
	$(CC) $(EX_CFLAGS) -shared -o $@ $<

# A plugin as ABI 1 built it (tests: old plugins still load).
$(EX_DIR)/abi1_plugin.so: test/plugins/abi1_plugin.c include/dsup.h $(BUILD)/config.mk
	@mkdir -p $(dir $@)
	$(CC) $(EX_CFLAGS) -shared -o $@ $<

# A worker whose init fails while a file exists (tests: failed restarts).
$(EX_DIR)/flaky_plugin.so: test/plugins/flaky_plugin.c include/dsup.h $(BUILD)/config.mk
	@mkdir -p $(dir $@)
	$(CC) $(EX_CFLAGS) -shared -o $@ $<

$(EX_DIR)/dsup-custom: examples/custom_main/greeter_main.c include/dsup.h $(BUILD)/libdsup.a
	@mkdir -p $(dir $@)
	$(CC) $(EX_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libdsup.a $(NODE_EI) $(LDLIBS)

# Install into a temp prefix, build the custom node from the installed copy
# with pkg-config alone, run it (--help), remove the temp dir.
install-check: all
	@set -e; tmp=$$(mktemp -d /tmp/dsup-inst-XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	$(MAKE) --no-print-directory install PREFIX=$$tmp/prefix >/dev/null; \
	cp examples/custom_main/greeter_main.c $$tmp/; \
	export PKG_CONFIG_PATH=$$tmp/prefix/lib/pkgconfig; \
	echo "pkg-config --cflags --libs dsup: $$(pkg-config --cflags --libs dsup)"; \
	cd $$tmp && $(CC) -std=gnu11 -Wall -Wextra -Wno-unused-parameter -o dsup-custom \
	  greeter_main.c $$(pkg-config --cflags --libs dsup); \
	./dsup-custom --help >/dev/null; prefix/bin/dsup-node --help >/dev/null; \
	nm -D --defined-only dsup-custom | grep -q ' T ei_x_new$$' && nm -D --defined-only dsup-custom | grep -q ' T dsup_spawn$$' \
	  || { echo "install-check: the custom node does not export dsup_*/ei_* for plugins" >&2; exit 1; }; \
	echo "install-check: OK (installed into and removed $$tmp)"

# ---- chaos (issue 18): every node in its own network namespace, faults from a
# seeded schedule, a workload and a checker (scripts/chaos.sh, test/chaos/).
# Needs root (ip netns). CHAOS_ARGS passes options, e.g. --seeds "7" --rounds 5.
.PHONY: chaos chaos-quick chaos-scale
chaos: deps all
	@scripts/chaos.sh $(CHAOS_ARGS)

# the fixed-seed run of make test: regression rounds, then two short seeds
chaos-quick: all
	@scripts/chaos.sh --quick $(CHAOS_ARGS)

# reduced scale run (issue 18 item 4): DSUP_NODES x children, several killed at once
chaos-scale: deps all
	@scripts/chaos.sh --scale $(CHAOS_ARGS)

clean:
	rm -rf build
