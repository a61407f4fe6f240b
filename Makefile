# gqe: one entry point. `make help` lists the targets.
SHELL := /bin/bash
CC      ?= cc
BUILD   := build
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp -fPIC -Icore \
           -I/usr/include/lua5.4 -I/usr/include/x86_64-linux-gnu/openblas-openmp
LIBDIR  := /usr/lib/x86_64-linux-gnu
# The host and test binaries link Lua, SQLite and OpenBLAS statically so they
# run on machines that have none of them (the GPU machine); CUDA stays dynamic.
STATIC_LIBS := $(LIBDIR)/liblua5.4.a $(LIBDIR)/libsqlite3.a $(LIBDIR)/openblas-openmp/libopenblas.a
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
  CFLAGS   += -DGQE_CUDA=1
endif
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/embedded.o
EMBED_SRC := $(sort $(wildcard lua/gqe/*.lua analysis/*.sql analysis/queries/*.sql))
LUA_SRC  := $(sort $(filter-out lua/main.c,$(wildcard lua/*.c)))
LUA_OBJ  := $(LUA_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/c/test_*.c))
TEST_BIN := $(TEST_SRC:tests/c/%.c=$(BUILD)/tests/%)
LINK     := $(CUDA_LIBS) $(STATIC_LIBS) $(SYS_LIBS)

.PHONY: all deps test test-c test-lua test-cli test-cuda bench bench-cuda run data clean help fuzz
all: $(BUILD)/libgqe.a $(BUILD)/gqe $(BUILD)/gqe.so

help:
	@echo "make deps | all | test | bench | run | data | clean | test-cuda | bench-cuda | fuzz"

# Installs only what is missing; safe to run again.
DEB_PKGS := liblua5.4-dev lua5.4 libopenblas-openmp-dev libsqlite3-dev sqlite3 libcmocka-dev lua-busted gnuplot-nox
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

$(BUILD)/kernels/%.o: kernels/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/libgqe.a: $(CORE_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/gqe: $(BUILD)/lua/main.o $(LUA_OBJ) $(BUILD)/libgqe.a
	$(CC) $(CFLAGS) -o $@ $^ $(LINK) -Wl,-E

# The Lua module for a stock lua5.4: Lua's symbols come from the interpreter;
# SQLite links shared because Debian's libsqlite3.a is not position-independent.
$(BUILD)/gqe.so: $(LUA_OBJ) $(BUILD)/libgqe.a
	$(CC) $(CFLAGS) -shared -o $@ $^ $(CUDA_LIBS) -lsqlite3 -L$(LIBDIR)/openblas-openmp -lopenblas $(SYS_LIBS)

$(BUILD)/tests/%: tests/c/%.c tests/c/testutil.h $(BUILD)/libgqe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/c -o $@ $< $(BUILD)/libgqe.a $(LINK) -lcmocka

test: deps all $(TEST_BIN)
	@./tests/run_all.sh

test-cuda: all $(TEST_BIN)
	@./tests/run_cuda.sh

bench: deps all
	$(BUILD)/gqe bench

bench-cuda: all
	./bench/run_cuda.sh

data: deps
	./scripts/prepare_data.sh

run: deps all data
	$(BUILD)/gqe experiments/quickstart.lua

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
