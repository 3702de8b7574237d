# SPDX-License-Identifier: GPL-2.0
#
# ldd_alloc: build the module, the userspace tools, and run them in QEMU.
#
#   make                 the module, against the cached pinned kernel (built on first use)
#   make KDIR=/path      the module, against your own Rust-enabled kernel build tree
#   make run             boot the pinned kernel in QEMU, load the module, run the demo
#                        and the tour; then a 768 MiB guest for its memory-pressure section
#   make test            all tests: host (cargo test) and VM (module loaded)
#   make shell           an interactive shell in the VM with the module loaded
#   make vm CMD='...'    run CMD in the VM, print its output, exit with its status
#                        (any shell text: CMD reaches the VM's sh byte for byte)
#   make bench           benchmarks in the VM (tables, JSON, plot)
#   make test-debug      the VM suite on the KASAN/lockdep/kmemleak kernel
#   make fuzz            a long fuzz run in the VM (LDD_FUZZ_OPS, default 10^6;
#                        LDD_FUZZ_SEED to replay; PROFILE=debug on the debug kernel)
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

.PHONY: bench fuzz fuzz-core all modules modules_install rust-analyzer setup kernel userspace run test test-debug shell vm clean check-kdir clippy

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
	@# The tour's "[memory pressure]" section, in a guest small enough to fill.
	@$(TOP)/scripts/vm.sh --kdir $(KDIR) --mem 768 cmd 'ldd-alloc tour --pressure-only'


test:
	@$(TOP)/scripts/test.sh

test-debug:
	@PROFILE=debug $(TOP)/scripts/test.sh

# Benchmarks in the VM: tables, JSON and an SVG plot in bench/ (see README).
bench: modules userspace
	@$(TOP)/scripts/bench.sh --kdir $(KDIR) --icount

# A long fuzz run of the module's file operations and ioctls in the VM; it
# prints its seed first and ops/s at the end.
fuzz:
	@$(TOP)/scripts/fuzz.sh

# Fuzzing: the allocator core in userspace (cargo fuzz), SECONDS=600 by default.
fuzz-core:
	@$(TOP)/scripts/fuzz-core.sh $(or $(SECONDS),600)

shell: modules userspace
	@$(TOP)/scripts/vm.sh --kdir $(KDIR) shell

# CMD goes through a file, never through the recipe's shell: $(value CMD)
# is CMD unexpanded (make would expand $x in it, and a shell would split
# lines and quotes). VM_DRY_RUN=DIR only writes /etc/ldd to DIR (the test).
vm: $(if $(VM_DRY_RUN),,modules userspace)
	@mkdir -p $(TOP)/.vm
	$(file >$(TOP)/.vm/vm-cmd.sh,$(value CMD))
	@$(TOP)/scripts/vm.sh $(if $(VM_DRY_RUN),,--kdir $(KDIR)) cmd-file $(TOP)/.vm/vm-cmd.sh

clean:
	rm -f $(TOP)/*.o $(TOP)/*.ko $(TOP)/*.mod $(TOP)/*.mod.c $(TOP)/.*.cmd $(TOP)/*.rmeta \
		$(TOP)/*.d $(TOP)/*.bc $(TOP)/Module.symvers $(TOP)/modules.order $(TOP)/rust-project.json
	rm -rf $(TOP)/userspace/target $(TOP)/.vm
