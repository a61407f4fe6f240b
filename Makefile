# gqe: one entry point. `make help` lists the targets.
SHELL := /bin/bash
CC      ?= cc
BUILD   := build
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -fno-math-errno -Wall -Wextra -Wno-unused-parameter -fopenmp -fPIC -Icore \
           -I/usr/include/lua5.4 -I/usr/include/x86_64-linux-gnu/openblas-openmp
LIBDIR  := /usr/lib/x86_64-linux-gnu
# The host and test binaries link Lua, SQLite, OpenBLAS and PCRE2 statically so
# they run on machines that have none of them (the GPU machine); CUDA stays dynamic.
STATIC_LIBS := $(LIBDIR)/liblua5.4.a $(LIBDIR)/libsqlite3.a $(LIBDIR)/openblas-openmp/libopenblas.a \
               $(LIBDIR)/libpcre2-8.a
SYS_LIBS    := -lm -ldl -lpthread -fopenmp

# CUDA is built whenever nvcc is found (CUDA=0 turns it off).
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA ?= $(if $(NVCC),1,0)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
NVCCFLAGS ?= -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
             -Xcompiler -fPIC,-Wall -Icore --expt-relaxed-constexpr -lineinfo

CORE_SRC := $(sort $(wildcard core/*.c core/*/*.c))
ifeq ($(CUDA),1)
  CORE_SRC := $(filter-out core/cuda_stub.c,$(CORE_SRC))
  CU_SRC   := $(sort $(wildcard kernels/*.cu))
  CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/%.o)
  CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 $(CUDA_HOME)/lib64/libcudart_static.a -lcublas -lcublasLt -lrt -lstdc++
  CFLAGS   += -DGQE_HAVE_CUDA=1 -I$(CUDA_HOME)/include
endif
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/embedded.o
EMBED_SRC := $(sort $(wildcard lua/gqe/*.lua analysis/*.sql analysis/queries/*.sql))
LUA_SRC  := $(sort $(filter-out lua/main.c,$(wildcard lua/*.c)))
LUA_OBJ  := $(LUA_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/c/test_*.c))
TEST_BIN := $(TEST_SRC:tests/c/%.c=$(BUILD)/tests/%)
LINK     := $(CUDA_LIBS) $(STATIC_LIBS) $(SYS_LIBS)

.PHONY: all deps test test-asan test-c test-lua test-cli test-cuda test-multi bench-multi bench bench-cuda run data clean help fuzz fuzz-deps
all: $(BUILD)/libgqe.a $(BUILD)/gqe $(BUILD)/gqe.so

help:
	@echo "make deps | all | test | bench | run | data | clean | test-cuda | bench-cuda | test-multi | bench-multi | fuzz"

# Installs only what is missing; safe to run again.
DEB_PKGS := liblua5.4-dev lua5.4 libopenblas-openmp-dev libsqlite3-dev sqlite3 libcmocka-dev lua-busted gnuplot-nox openmpi-bin libopenmpi-dev libpcre2-dev
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	else echo "deps: all present"; fi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/embedded.c: $(EMBED_SRC) scripts/embed.sh
	@mkdir -p $(dir $@)
	./scripts/embed.sh $(EMBED_SRC) > $@

$(BUILD)/gen/embedded.o: $(BUILD)/gen/embedded.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/kernels/%.o: kernels/%.cu $(wildcard kernels/*.cuh core/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/libgqe.a: $(CORE_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/gqe: $(BUILD)/lua/main.o $(LUA_OBJ) $(BUILD)/libgqe.a
	$(CC) $(CFLAGS) -o $@ $^ $(LINK) -Wl,-E

# The Lua module for a stock lua5.4: Lua's symbols come from the interpreter;
# SQLite and PCRE2 link shared because Debian's static archives are not position-independent.
$(BUILD)/gqe.so: $(LUA_OBJ) $(BUILD)/libgqe.a
	$(CC) $(CFLAGS) -shared -Wl,-z,nodelete -o $@ $^ $(CUDA_LIBS) -lsqlite3 -lpcre2-8 -L$(LIBDIR)/openblas-openmp -lopenblas $(SYS_LIBS)

# Test binaries find cmocka in build/lib first (a copy made here), so a
# build/ carried to a GPU machine without cmocka still runs its tests.
$(BUILD)/tests/%: tests/c/%.c $(wildcard tests/c/*.h) $(BUILD)/libgqe.a $(BUILD)/lib/libcmocka.so.0
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/c -o $@ $< $(BUILD)/libgqe.a $(LINK) -lcmocka -Wl,-rpath,'$$ORIGIN/../lib'

$(BUILD)/lib/libcmocka.so.0:
	@mkdir -p $(dir $@)
	cp -L "$$(ldconfig -p | sed -n 's/.*libcmocka\.so\.0 .*=> //p' | head -1)" $@

# The C tests again under AddressSanitizer and UndefinedBehaviorSanitizer:
# the same sources compiled into their own tree, build/asan/, CUDA off (the
# stub stands in for the kernels). tests/run_all.sh runs them as asan:<name>,
# and replays the fuzz regressions (tests/fuzz/regressions/<target>/) through
# the fuzz targets built here with a plain main() instead of libFuzzer.
ASAN      := $(BUILD)/asan
ASAN_FLAGS := -O1 -g -Wno-format-truncation -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_CFLAGS := $(filter-out -O2 -O3 -DGQE_HAVE_CUDA=1,$(CFLAGS)) $(ASAN_FLAGS)
ASAN_OBJ  := $(patsubst %.c,$(ASAN)/%.o,$(sort $(wildcard core/*.c core/*/*.c))) $(ASAN)/gen/embedded.o
ASAN_LUA_OBJ := $(LUA_SRC:%.c=$(ASAN)/%.o)
# Built through a pattern rule, so make would delete them as intermediates
# after the test run (and print that after the summary line): keep them.
.SECONDARY: $(ASAN_LUA_OBJ)
ASAN_TEST_BIN := $(filter-out %/test_cuda_ops,$(TEST_SRC:tests/c/%.c=$(ASAN)/tests/%))
ASAN_REPLAY_BIN := $(patsubst tests/fuzz/fuzz_%.c,$(ASAN)/fuzz/replay_%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))

$(ASAN)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -MMD -MP -c $< -o $@

$(ASAN)/gen/embedded.o: $(BUILD)/gen/embedded.c
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -c $< -o $@

$(ASAN)/libgqe.a: $(ASAN_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(ASAN)/tests/%: tests/c/%.c $(wildcard tests/c/*.h) $(ASAN)/libgqe.a
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -Itests/c -o $@ $< $(ASAN)/libgqe.a $(STATIC_LIBS) $(SYS_LIBS) -lcmocka

$(ASAN)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(ASAN_LUA_OBJ) $(ASAN)/libgqe.a
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -Ilua -o $@ $< tests/fuzz/replay_main.c $(ASAN_LUA_OBJ) $(ASAN)/libgqe.a $(STATIC_LIBS) $(SYS_LIBS)

test-asan: $(ASAN_TEST_BIN) $(ASAN_REPLAY_BIN)

$(BUILD)/bench_attention: bench/bench_attention.c $(BUILD)/libgqe.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libgqe.a $(LINK)

# cuBLASLt's algorithms against cublasGemmEx's pick, per training shape (kernels/NOTES.md).
$(BUILD)/gemm_algos: bench/gemm_algos.cu
	$(NVCC) $(NVCCFLAGS) -o $@ $< -lcublasLt -lcublas

test: deps all data $(TEST_BIN) $(ASAN_TEST_BIN) $(ASAN_REPLAY_BIN)
	@./tests/run_all.sh

test-cuda: all $(TEST_BIN)
	@./tests/run_cuda.sh

# Several GPUs of one node (data parallel): equal losses, then bench-multi.
test-multi: all
	@./tests/run_multi.sh

bench-multi: all
	./bench/run_multi.sh

bench: deps all data
	$(BUILD)/gqe bench/logging.lua 20
	$(BUILD)/gqe bench/tokenizer.lua
	$(BUILD)/gqe bench

bench-cuda: all $(BUILD)/bench_attention
	./bench/run_cuda.sh

data: deps all
	./scripts/prepare_data.sh

run: deps all data
	$(BUILD)/gqe experiments/quickstart.lua

# libFuzzer targets (tests/fuzz/fuzz_*.c), each run FUZZ_SECONDS under
# AddressSanitizer. The parsers are compiled instrumented; the rest of the
# library comes from libgqe.a as usual. clang is installed on demand here
# rather than by `make deps`, since only this target needs it.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_SRC     := core/error.c core/tensor.c core/rng.c $(sort $(wildcard core/io/safetensors*.c core/io/file.c core/data/*.c)) core/eval/task.c
FUZZ_BIN     := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_LINK    := $(CUDA_LIBS) $(STATIC_LIBS) -lm -ldl -lpthread -l:libgomp.so.1

fuzz-deps:
	@if ! command -v $(FUZZ_CC) >/dev/null || ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then \
	  echo "installing: clang-14 libclang-rt-14-dev"; SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq clang-14 libclang-rt-14-dev >/dev/null; fi

# fuzz_config and fuzz_lua_api embed Lua: they also take the bindings (lua/*.c), instrumented.
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_SRC) $(LUA_SRC) $(BUILD)/libgqe.a | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
	  -Icore -Ilua -I/usr/include/lua5.4 -o $@ $< $(FUZZ_SRC) $(if $(filter config lua_api,$*),$(LUA_SRC)) \
	  $(BUILD)/libgqe.a $(FUZZ_LINK)

# Seeds (tests/fuzz/seeds/<target>/, valid files so the fuzzers start from
# the real formats) and saved regressions start each corpus; a crash input
# lands in build/fuzz/artifacts/<target>/.
fuzz: $(FUZZ_BIN)
	@for b in $(FUZZ_BIN); do n=$${b##*/fuzz_}; echo "== $$b ($(FUZZ_SECONDS) s)"; \
	  mkdir -p $(BUILD)/fuzz/corpus/$$n $(BUILD)/fuzz/artifacts/$$n; \
	  for d in tests/fuzz/seeds/$$n tests/fuzz/regressions/$$n; do if [ -d $$d ]; then cp $$d/* $(BUILD)/fuzz/corpus/$$n/; fi; done; \
	  dict=tests/fuzz/$$n.dict; [ -f $$dict ] && dict=-dict=$$dict || dict=; \
	  $$b -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 \
	    -artifact_prefix=$(BUILD)/fuzz/artifacts/$$n/ $$dict $(BUILD)/fuzz/corpus/$$n || \
	    { echo "fuzz_$$n found a crash: fix it, then keep the input in tests/fuzz/regressions/$$n/ (make test replays it)"; exit 1; }; done

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
