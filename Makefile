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
#   make clean

SHELL := /bin/bash
TOP := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))

# Kbuild includes this Makefile too? No: Kbuild reads ./Kbuild first.
ifneq ($(KDIR),)
  KDIR_GIVEN := 1
endif

# The clang suffix the pinned kernel is built with; a user's tree may say LLVM=1.
LLVM ?= -19
KDIR ?= $(shell $(TOP)/scripts/build-kernel.sh base)

.PHONY: all modules setup kernel userspace run test shell vm clean check-kdir clippy

all: modules

setup:
	@$(TOP)/scripts/setup.sh

kernel: setup
	@$(TOP)/scripts/build-kernel.sh base

modules: $(if $(KDIR_GIVEN),,setup)
	$(MAKE) -C $(KDIR) M=$(TOP) LLVM=$(LLVM) modules

clippy:
	$(MAKE) -C $(KDIR) M=$(TOP) LLVM=$(LLVM) CLIPPY=1 modules

userspace: setup
	@$(TOP)/scripts/build-userspace.sh

run: modules userspace
	@$(TOP)/scripts/vm.sh --kdir $(KDIR) demo

test: setup
	@$(TOP)/scripts/test.sh

shell: modules userspace
	@$(TOP)/scripts/vm.sh --kdir $(KDIR) shell

vm: modules userspace
	@$(TOP)/scripts/vm.sh --kdir $(KDIR) cmd "$(CMD)"

clean:
	@if [ -n "$(KDIR_GIVEN)" ] || [ -d "$$(cat $${XDG_CACHE_HOME:-$$HOME/.cache}/ldd-alloc/ksrc.path 2>/dev/null)" ]; then \
		$(MAKE) -C $(KDIR) M=$(TOP) LLVM=$(LLVM) clean; fi
	rm -rf $(TOP)/userspace/target $(TOP)/.vm
