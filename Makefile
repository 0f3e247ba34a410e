# SPDX-License-Identifier: MIT
#
# slidescan build.  A plain Makefile on pkg-config.
#
#   make            build the programs, tests and benchmarks into $(BUILD)
#   make demo       install missing Debian packages, build, scan a slide on
#                   the simulated microscope, analyse it, print the results
#   make test       install missing Debian packages, build, run every test
#   make bench      run the benchmarks against their peers (bench/README.md)
#   make sanitize   the whole suite under AddressSanitizer and UBSan
#   make fuzz       run the protocol fuzz target for a bounded time
#   make install    install programs, unit, sysusers, tmpfiles, udev rules
#   V=1             show the compiler command lines
#
# Every folder listed in LIBDIRS becomes one static library made of all its
# .c files except main.c.  A folder's main.c, when present, is a program.
# Tests are tests/unit/test_*.c, one binary each.  BUILD may be set to a
# private directory so that several builds can run side by side.

BUILD   ?= build
PREFIX  ?= /usr/local
WERROR  ?= 1
SAN     ?=
OPT     ?= -O2

CC      ?= cc
PKG_CONFIG ?= pkg-config

PKGS := libuv sqlite3 jansson inih libtiff-4 libturbojpeg libpng openslide \
        fftw3f openblas libgphoto2 libusb-1.0 libsystemd glib-2.0
TEST_PKGS := cmocka

LIBDIRS := common imaging drivers drivers/sim drivers/hw storage scan \
           protocol daemon worker/nn worker/analysis worker tools/client

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wno-unused-parameter -Wformat=2 -Wvla -Wno-format-truncation
ifeq ($(WERROR),1)
WARN += -Werror
endif

PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
TEST_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS   := $(shell $(PKG_CONFIG) --libs $(TEST_PKGS) 2>/dev/null)

CPPFLAGS += -I. -D_GNU_SOURCE -DSLIDESCAN_VERSION='"$(VERSION)"'
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=c11 -pthread -fno-strict-aliasing $(WARN) $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lm -lpthread

ifneq ($(SAN),)
CFLAGS  += -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SAN)
endif

VERSION := 0.1.0

ifeq ($(V),1)
Q :=
else
Q := @
endif

# --- libraries -------------------------------------------------------------

libname = $(BUILD)/lib/lib$(subst /,_,$(1)).a
libsrcs = $(filter-out $(1)/main.c,$(wildcard $(1)/*.c))
objs    = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIBS := $(foreach d,$(LIBDIRS),$(if $(call libsrcs,$(d)),$(call libname,$(d))))

define lib_rule
$(call libname,$(1)): $(call objs,$(call libsrcs,$(1)))
	@mkdir -p $$(@D)
	@rm -f $$@
	$$(Q)$$(AR) rcs $$@ $$^
endef
$(foreach d,$(LIBDIRS),$(if $(call libsrcs,$(d)),$(eval $(call lib_rule,$(d)))))

LINK_LIBS = -Wl,--start-group $(LIBS) -Wl,--end-group

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

# --- programs ----------------------------------------------------------------

PROGRAMS := $(BUILD)/bin/slidescand $(BUILD)/bin/slidescan \
            $(BUILD)/bin/slidescan-worker

$(BUILD)/bin/slidescand: $(BUILD)/obj/daemon/main.o $(LIBS)
$(BUILD)/bin/slidescan: $(BUILD)/obj/tools/client/main.o $(LIBS)
$(BUILD)/bin/slidescan-worker: $(BUILD)/obj/worker/main.o $(LIBS)

$(PROGRAMS):
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

# --- tests and benchmarks --------------------------------------------------

TEST_SRCS  := $(wildcard tests/unit/test_*.c)
TEST_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
TEST_HELPERS := $(call objs,$(wildcard tests/support/*.c))

$(BUILD)/obj/tests/%.o: CFLAGS += $(TEST_CFLAGS)
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(TEST_HELPERS) $(LIBS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(TEST_HELPERS) $(LINK_LIBS) $(TEST_LIBS) \
		$(LDLIBS)

# Helper programs that end-to-end scripts run (tests/helpers/<name>.c →
# $(BUILD)/tests/helpers/<name>), linked like the unit tests, so scripts
# never compile C at test time and sanitizer builds cover them too.
HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_BINS := $(patsubst tests/helpers/%.c,$(BUILD)/tests/helpers/%,\
                 $(HELPER_SRCS))

$(BUILD)/tests/helpers/%: $(BUILD)/obj/tests/helpers/%.o $(TEST_HELPERS) \
                          $(LIBS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(TEST_HELPERS) $(LINK_LIBS) $(TEST_LIBS) \
		$(LDLIBS)

BENCH_SRCS := $(wildcard bench/bench_*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIBS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

# --- robustness: preload libraries and fault tools ------------------------
# powerfail.so, an LD_PRELOAD power-loss model, and powerfail, its tool, for
# the robustness tests (tests/support/powerfail/README.md).  They are built
# without sanitizers and without the project libraries, so that they load
# into any program, sanitized or not.

PF_DIR    := tests/support/powerfail
PF_SO     := $(BUILD)/support/powerfail.so
PF_TOOL   := $(BUILD)/support/powerfail
PF_CFLAGS := -std=c11 -O2 -g -fPIC -pthread -I. -D_GNU_SOURCE \
             $(filter-out -Wformat=2,$(WARN))

$(PF_SO): $(PF_DIR)/pf_preload.c $(PF_DIR)/pf_state.c $(PF_DIR)/pf.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(PF_CFLAGS) -shared -o $@ $(PF_DIR)/pf_preload.c \
		$(PF_DIR)/pf_state.c -ldl

$(PF_TOOL): $(PF_DIR)/pf_tool.c $(PF_DIR)/pf_state.c $(PF_DIR)/pf.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(PF_CFLAGS) -o $@ $(PF_DIR)/pf_tool.c $(PF_DIR)/pf_state.c

tests: $(PF_SO) $(PF_TOOL)

# --- end of the robustness block --------------------------------------------

# --- top-level targets -----------------------------------------------------

.PRECIOUS: $(BUILD)/obj/%.o

.PHONY: all programs tests benches deps demo test bench sanitize san-tests fuzz \
        install clean

all: programs tests benches

programs: $(PROGRAMS)
tests: $(TEST_BINS) $(HELPER_BINS) $(PROGRAMS)
benches: $(BENCH_BINS) $(PROGRAMS)

deps:
	@tools/install-deps $(DEPS_FLAGS)

demo: deps
	@$(MAKE) --no-print-directory programs
	@BUILD=$(BUILD) tools/demo

# The whole suite twice: the plain build (warnings as errors), then the
# same tests under AddressSanitizer and UBSan (as `make sanitize`), with
# one summary line over both at the end.
TOTALS = $(abspath $(BUILD))/test-totals
test: DEPS_FLAGS = --test
test: deps
	@$(MAKE) --no-print-directory tests
	@$(MAKE) --no-print-directory san-tests
	@rm -f $(TOTALS); rc=0; \
	BUILD=$(BUILD) tests/run --part "plain build" --totals $(TOTALS) || rc=1; \
	echo "# the same suite under AddressSanitizer and UBSan ($(SANBUILD))"; \
	BUILD=$(SANBUILD) $(SAN_ENV) tests/run --totals $(TOTALS) $(SAN_TESTS) \
		|| rc=1; \
	exit $$rc

bench: DEPS_FLAGS = --test
bench: deps
	@$(MAKE) --no-print-directory benches
	@BUILD=$(BUILD) bench/run

# The sanitized build lives beside BUILD (build-san for the default build,
# /tmp/x-san for BUILD=/tmp/x), so private builds stay private.  Warnings
# are the normal build's business (-O1 warns differently), so they do not
# stop it.  Any ASan, LSan or UBSan report fails its test.  SAN_TESTS
# selects tests by name, as tests/run's patterns do.
# The test helpers' paths (tu_tmp, tu_data) live until exit by contract,
# so LeakSanitizer is told not to report them; nor the device lists that
# libgphoto2 2.5.30's USB port library (the libusb1 iolib) leaks when it
# loads and when it searches: its load_devicelist() frees only a non-empty
# libusb device list, so on a machine where libusb sees no USB device at
# all (containers, CI; a real host has root hubs) every model probed by
# gp_camera_autodetect() leaks an empty list (about 2,500, 20 kB, per
# call).  drivers/hw frees every list it takes itself.  Nor the CPU set
# that glibc 2.36's pthread_getattr_np allocates when ASan sets up a new
# thread's stack bounds, which LSan sometimes finds unreachable when a
# thread is still starting as the process exits (no caller of ours on
# that stack).  Test helpers and those libraries only: the project's own
# leaks are all reported.
SANBUILD ?= $(BUILD)-san
SAN_SUPP := $(abspath $(SANBUILD))/lsan.supp
SAN_ASAN := detect_leaks=1:verify_asan_link_order=0
SAN_ASAN := $(SAN_ASAN):detect_stack_use_after_return=1
# Full stacks through libraries built without frame pointers (libgphoto2,
# jansson): slower, but reports name our callers and suppressions match.
SAN_ASAN := $(SAN_ASAN):fast_unwind_on_malloc=0
SAN_ENV := SLIDESCAN_SANITIZE=1 ASAN_OPTIONS=$(SAN_ASAN) \
	LSAN_OPTIONS=suppressions=$(SAN_SUPP):print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

sanitize: DEPS_FLAGS = --test
sanitize: deps
	@$(MAKE) --no-print-directory san-tests
	@BUILD=$(SANBUILD) $(SAN_ENV) tests/run $(SAN_TESTS)

# The sanitized build of the tests and programs, and its suppressions.
san-tests:
	@$(MAKE) --no-print-directory BUILD=$(SANBUILD) SAN=address,undefined \
		OPT=-O1 WERROR=0 tests
	@printf '%s\n' leak:tu_tmp leak:tu_data 'leak:gp_port_usb_find_device*' \
		leak:gp_port_info_list_load leak:__pthread_getattr_np \
		>$(SAN_SUPP)

fuzz: DEPS_FLAGS = --test
fuzz: deps
	@tests/fuzz/run

install: programs
	@BUILD=$(BUILD) PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) tools/install

clean:
	rm -rf $(BUILD) $(SANBUILD) $(BUILD)-fuzz build-san build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
