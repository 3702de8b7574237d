# SPDX-License-Identifier: GPL-2.0
#
# ldd_alloc: build the module, the userspace tools, and run them in QEMU.
#
#   make                 the module, against the cached pinned kernel (built on first use)
#   make KDIR=/path      the module, against your own Rust-enabled kernel build tree
#   make run             boot the pinned kernel in QEMU, load the module, run the demo
#   make test            all tests: host (cargo test) and VM (module loaded)
#   make shell           an interactive shell in the VM with the module loaded
#   make vm CMD='...'    run CMD in the VM, print its output, exit with its status
#   make bench           benchmarks in the VM (tables, JSON, plot)
#   make test-debug      the VM suite on the KASAN/lockdep/kmemleak kernel
#   make clean

SHELL := /bin/bash
TOP := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))

ifneq ($(KDIR),)
  # A user's own tree: LLVM= is whatever that tree needs (checked below).
  KDIR_GIVEN := 1
else
  # The pinned kernel, built with clang-19 on first use and cached.
  # Evaluated on first use only, so 'make clean' or 'make test' never builds it here.
  LLVM ?= -19
  KDIR = $(eval KDIR := $$(shell $(TOP)/scripts/build-kernel.sh base))$(KDIR)
endif

.PHONY: bench fuzz-core all modules modules_install rust-analyzer setup kernel userspace run test test-debug shell vm clean check-kdir clippy

all: modules

setup:
	@$(TOP)/scripts/setup.sh

kernel: setup
	@$(TOP)/scripts/build-kernel.sh base

check-kdir:
	@$(TOP)/scripts/check-kdir.sh $(KDIR) $(LLVM)

modules: $(if $(KDIR_GIVEN),,setup) check-kdir
	$(MAKE) -C $(KDIR) M=$(TOP) $(if $(LLVM),LLVM=$(LLVM)) modules

modules_install: check-kdir
	$(MAKE) -C $(KDIR) M=$(TOP) $(if $(LLVM),LLVM=$(LLVM)) modules_install

# rust-project.json for rust-analyzer: resolves the kernel crate of KDIR.
rust-analyzer: check-kdir
	$(MAKE) -C $(KDIR) M=$(TOP) $(if $(LLVM),LLVM=$(LLVM)) rust-analyzer

clippy: check-kdir
	$(MAKE) -C $(KDIR) M=$(TOP) $(if $(LLVM),LLVM=$(LLVM)) CLIPPY=1 modules

userspace: setup
	@$(TOP)/scripts/build-userspace.sh

run: modules userspace
	@$(TOP)/scripts/vm.sh --kdir $(KDIR) demo

test:
	@$(TOP)/scripts/test.sh

test-debug:
	@PROFILE=debug $(TOP)/scripts/test.sh

# Benchmarks in the VM: tables, JSON and an SVG plot in bench/ (see README).
bench: modules userspace
	@$(TOP)/scripts/bench.sh --kdir $(KDIR)

# Fuzzing: the allocator core in userspace (cargo fuzz), SECONDS=600 by default.
fuzz-core:
	@$(TOP)/scripts/fuzz-core.sh $(or $(SECONDS),600)

shell: modules userspace
	@$(TOP)/scripts/vm.sh --kdir $(KDIR) shell

vm: modules userspace
	@$(TOP)/scripts/vm.sh --kdir $(KDIR) cmd "$(CMD)"

clean:
	rm -f $(TOP)/*.o $(TOP)/*.ko $(TOP)/*.mod $(TOP)/*.mod.c $(TOP)/.*.cmd $(TOP)/*.rmeta \
		$(TOP)/*.d $(TOP)/Module.symvers $(TOP)/modules.order $(TOP)/rust-project.json
	rm -rf $(TOP)/userspace/target $(TOP)/.vm
