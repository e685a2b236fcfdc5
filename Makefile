# twlb - one Makefile for the balancer, the test backend, the tests and the tools.
#
#   make            build lb/twlb, backends/twbackend and the unit tests
#   make deps       apt-get install whatever is missing (Debian 12, as root)
#   make run        deps + build + three demo backends + twlb on config/demo.json
#   make test       deps + lint + unit tests and integration tests, each plain and
#                   under ASan/UBSan
#   make scale-test twlb nodes behind BGP/ECMP (BIRD) and a VRRP pair (keepalived) in
#                   network namespaces, and the simulator against real runs (< 3 min)
#   make install    twlb, man pages, unit, /etc/twlb/twlb.json, docs (PREFIX, DESTDIR)
#   make deb        build/twlb_VERSION_ARCH.deb with dpkg-deb
#   make man        the man pages twlb(8), twlb.json(5) from docs/man/*.scd (scdoc)
#   make package-test  the schema against the key tables, man pages, install, deb
#   make lint       lb/ structure: no include cycles, layers (lb/README.md), <= 600 lines
#   make integration-san  the integration tests through ASan+UBSan builds of the binaries
#   make clang      every object and unit test built with clang -Werror (build/clang)
#   make fuzz       deps-fuzz + each libFuzzer harness of tests/fuzz for FUZZ_SECONDS (60)
#   make fuzz-replay  every fuzz corpus file and saved crash through ASan+UBSan (gcc,
#                   no libFuzzer needed; part of make test)
#   make faults     the fault suite, tests/faults (bounded, < 10 min; its short cases are
#                   in make test too)
#   make faults-san the fault suite through the ASan+UBSan builds (memory bounds off)
#   make soak       checksummed connections through twlb under reloads (not in make test;
#                   SOAK_CONNECTIONS, default 1000000, SOAK_SECONDS cap, default 3600)
#   make bench      benchmarks (not part of make test)
#   make margin     the kernel-mode ISN margin measured in network namespaces: clock
#                   reading to ISN, then a sweep of margins (not in make test; < 20 min)
#   make clean

CC      ?= cc
# libsystemd: sd_notify for Type=notify units (lb/os/sdnotify.h).
PKGS    := libuv jansson libcap libsystemd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wmissing-prototypes
CFLAGS  ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(PKG_CFLAGS) -Ilb -MMD -MP
LDLIBS  := $(PKG_LIBS) -lm

# SANITIZER=1 builds everything into build/san with ASan + UBSan; FUZZ=1 into build/fuzz
# with clang-14, ready to link with libFuzzer (make fuzz).
ifeq ($(FUZZ),1)
CC      := clang-14
BUILD   := build/fuzz
ALL_CFLAGS += -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=all
LDFLAGS += -fsanitize=fuzzer,address,undefined
else ifeq ($(SANITIZER),1)
BUILD   := build/san
ALL_CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
else
BUILD   := build/rel
endif

# lb/ is layered (lb/README.md): core (pure) <- os, config <- sim, runtime <- admin <-
# main.c.  The core is a static library of its own: its unit tests link nothing else, so
# a socket or clock call in it fails the build.
objs = $(patsubst %.c,$(BUILD)/%.o,$(wildcard $(1)/*.c))
CORE_OBJS    := $(call objs,lb/core)
OS_OBJS      := $(call objs,lb/os)
CONFIG_OBJS  := $(call objs,lb/config)
SIM_OBJS     := $(call objs,lb/sim)
RUNTIME_OBJS := $(call objs,lb/runtime)
# + the dashboard page, lb/admin/dashboard.html, as a C array generated at build time
ADMIN_OBJS   := $(call objs,lb/admin) $(BUILD)/gen/dashboard_html.o
CORE_LIB     := $(BUILD)/libtwlbcore.a
# Everything but main.o and the core, in link order (a layer before what it uses).
UPPER_OBJS   := $(ADMIN_OBJS) $(RUNTIME_OBJS) $(SIM_OBJS) $(CONFIG_OBJS) $(OS_OBJS)
LB_OBJS      := $(BUILD)/lb/main.o $(UPPER_OBJS)

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRCS := $(wildcard tests/bench/bench_*.c)
BENCH_BINS := $(BENCH_SRCS:tests/bench/%.c=$(BUILD)/bench/%)
# What a unit test links besides the core library (default: nothing), and its libraries
# (default: -lm alone for a test of the core, $(LDLIBS) once it links anything else).
UNIT_LINK_test_kdiag    := $(OS_OBJS)
UNIT_LINK_test_config   := $(CONFIG_OBJS) $(OS_OBJS)
UNIT_LINK_test_worker   := $(RUNTIME_OBJS) $(CONFIG_OBJS) $(OS_OBJS)
UNIT_LINK_test_simulate := $(BUILD)/lb/sim/model.o
UNIT_LINK_test_metrics  := $(addprefix $(BUILD)/lb/admin/,metrics.o walk.o prom.o procinfo.o) \
                           $(RUNTIME_OBJS) $(CONFIG_OBJS) $(OS_OBJS)
# The model is pure, on the core: a call into libuv or jansson must fail its link.
UNIT_LIBS_test_simulate := -lm

DEB_PKGS := gcc make libc6-dev pkg-config libuv1-dev libjansson-dev libcmocka-dev libcap-dev \
            libsystemd-dev \
            python3 iproute2 procps curl python3-prometheus-client xxd \
            chromium chromium-driver python3-selenium bird2 keepalived nftables \
            python3-jsonschema scdoc man-db dpkg-dev systemd

# Fuzzing (tests/fuzz/README.md): one harness per target, linked with what it needs.
FUZZ_TARGETS := config http statefile statemap simulate
FUZZ_SECONDS ?= 60
FUZZ_LINK_config    := $(CONFIG_OBJS) $(OS_OBJS)
FUZZ_LINK_http      := $(BUILD)/lb/admin/http.o
FUZZ_LINK_statefile := $(OS_OBJS)
FUZZ_LINK_statemap  := $(OS_OBJS)
FUZZ_LINK_simulate  := $(SIM_OBJS) $(CONFIG_OBJS) $(OS_OBJS)
DEB_PKGS_FUZZ := clang-14 libfuzzer-14-dev

STRESS_SRCS := $(wildcard tests/stress/*.c)
STRESS_OBJS := $(STRESS_SRCS:%.c=$(BUILD)/%.o)

.PHONY: all deps deps-bench run test unit unit-san integration integration-san lint \
        lint-selftest bench stress clean metrics-doc scale-test objects clang package-test \
        man install deb deps-fuzz fuzz fuzz-replay faults faults-san soak margin
all: lb/twlb backends/twbackend $(UNIT_BINS) $(if $(STRESS_SRCS),tests/stress/twstress)

# Install the Debian packages in $(1) that are missing (one recipe line for deps,
# deps-fuzz and deps-bench).
apt_install = missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

deps:
	@$(call apt_install,$(DEB_PKGS))

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The dashboard page as a NUL-terminated array (admin/dashboard.h declares it).
$(BUILD)/gen/dashboard_html.c: lb/admin/dashboard.html
	@mkdir -p $(dir $@)
	{ echo '/* generated from lb/admin/dashboard.html by the Makefile: do not edit */'; \
	  echo '#include "admin/dashboard.h"'; \
	  echo 'const char dashboard_html[] = {'; xxd -i < $<; echo ', 0};'; \
	  echo 'const size_t dashboard_html_len = sizeof dashboard_html - 1;'; } > $@.tmp
	mv $@.tmp $@

$(BUILD)/gen/dashboard_html.o: $(BUILD)/gen/dashboard_html.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(CORE_LIB): $(CORE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

ifeq ($(SANITIZER),1)
$(BUILD)/twlb: $(LB_OBJS) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/twbackend: $(BUILD)/backends/twbackend.o $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
else
lb/twlb: $(LB_OBJS) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

backends/twbackend: $(BUILD)/backends/twbackend.o $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
endif

# The metric list, generated from the table alone (no runtime linked).
$(BUILD)/tools/metrics_doc: $(BUILD)/tests/tools/metrics_doc.o $(BUILD)/lb/admin/metrics.o \
                            $(BUILD)/lb/admin/procinfo.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

# The configuration's key tables as JSON, for the schema test (tests/package).
$(BUILD)/tools/config_keys: $(BUILD)/tests/tools/config_keys.o $(CONFIG_OBJS) $(OS_OBJS) \
                            $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# docs/metrics.md, and the same table in docs/operations.md between its markers.
metrics-doc: $(BUILD)/tools/metrics_doc
	$< > docs/metrics.md
	python3 tests/tools/metrics_into_operations.py docs/metrics.md docs/operations.md

tests/stress/twstress: $(STRESS_OBJS) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

.SECONDEXPANSION:
$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $$(UNIT_LINK_test_$$*) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(or $(UNIT_LIBS_test_$*),$(if $(UNIT_LINK_test_$*),$(LDLIBS),-lm)) $(CMOCKA_LIBS)

ifeq ($(FUZZ),1)
$(BUILD)/fuzz/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $$(FUZZ_LINK_$$*) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
else
$(BUILD)/fuzz/replay_%: $(BUILD)/tests/fuzz/replay.o $(BUILD)/tests/fuzz/fuzz_%.o \
                        $$(FUZZ_LINK_$$*) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
endif

$(BUILD)/bench/bench_%: $(BUILD)/tests/bench/bench_%.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

# The kernel-mode margin's clock measurement (tests/bench/margin.py), linked with the
# runtime's own clock and socket code so that it reads the clocks as twlb does.
$(BUILD)/bench/margin_clock: $(BUILD)/tests/bench/margin_clock.o $(BUILD)/lb/os/clock.o \
                             $(BUILD)/lb/os/sockprep.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# docs/reuse.md, "The kernel-mode margin": root and network namespaces; the JSON results
# go to build/margin-*.json.
margin: lb/twlb backends/twbackend $(BUILD)/bench/margin_clock
	python3 tests/bench/margin.py clock --json build/margin-clock.json
	python3 tests/bench/margin.py sweep --json build/margin-sweep.json

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

unit-san:
	$(MAKE) SANITIZER=1 unit

# Every object and unit test, in $(BUILD): what `make clang` compiles with clang.
objects: $(LB_OBJS) $(CORE_LIB) $(BUILD)/backends/twbackend.o $(STRESS_OBJS) $(UNIT_BINS)

# The same warnings as an error with clang (its own build dir, so gcc's objects stay).
# make test runs it when clang is installed (apt-get install clang), and says so if not.
clang:
	$(MAKE) CC=clang BUILD=build/clang objects

integration: lb/twlb backends/twbackend tests/stress/twstress
	python3 tests/integration/run.py

# The integration suite through ASan + UBSan builds of twlb and twbackend (the harness
# fails a test whose process logged a sanitizer report).  TWLB_SANITIZED=1 tells a test
# that cannot mean anything under ASan to skip, saying why (none needs to today: the
# whole suite passes under ASan in about the time it takes without).
SAN_RUN := TWLB_SANITIZED=1 TWLB_BIN=$(CURDIR)/build/san/twlb \
           TWBACKEND_BIN=$(CURDIR)/build/san/twbackend
integration-san: tests/stress/twstress
	$(MAKE) SANITIZER=1 build/san/twlb build/san/twbackend
	$(SAN_RUN) python3 tests/integration/run.py

# Faults, each with an asserted outcome (docs/reliability.md); TWLB_BIN etc. as above.
faults: lb/twlb backends/twbackend tests/stress/twstress
	python3 tests/faults/run.py
faults-san: tests/stress/twstress
	$(MAKE) SANITIZER=1 build/san/twlb build/san/twbackend
	$(SAN_RUN) python3 tests/faults/run.py

# SOAK_CONNECTIONS checksummed connections of mixed sizes with a SIGHUP every few seconds,
# stopped early (and said so) at SOAK_SECONDS.
SOAK_CONNECTIONS ?= 1000000
SOAK_SECONDS     ?= 3600
soak: lb/twlb backends/twbackend
	python3 tests/soak/soak.py --connections $(SOAK_CONNECTIONS) --max-seconds $(SOAK_SECONDS)

# Past one machine (docs/scale-out.md): three nodes behind BGP/ECMP, a VRRP pair, and
# `twlb simulate --target-rate` checked against real runs.  Needs root and namespaces
# (skips, saying so, without them); bird2, keepalived and nftables come from make deps.
scale-test: lb/twlb backends/twbackend tests/stress/twstress
	python3 tests/scale/run.py

MAN_PAGES := build/man/twlb.8 build/man/twlb.json.5
build/man/%: docs/man/%.scd
	@mkdir -p $(dir $@)
	scdoc < $< > $@.tmp && mv $@.tmp $@
man: $(MAN_PAGES)

# make install: the binary, man pages, the unit (its paths rewritten to these), the
# production example config (never over an existing one), the schema and the docs.
VERSION        := $(shell sed -n 's/^\#define TWLB_VERSION "\(.*\)"/\1/p' lb/core/version.h)
PREFIX         ?= /usr/local
SBINDIR        ?= $(PREFIX)/sbin
MANDIR         ?= $(PREFIX)/share/man
DOCDIR         ?= $(PREFIX)/share/doc/twlb
DATADIR        ?= $(PREFIX)/share/twlb
SYSCONFDIR     ?= /etc
# systemd looks in /usr/lib, /usr/local/lib and /etc, not under any other prefix.
UNITDIR_STD    := $(filter /usr /usr/local,$(PREFIX))
SYSTEMDUNITDIR ?= $(if $(UNITDIR_STD),$(PREFIX)/lib/systemd/system,/etc/systemd/system)
DOCS := README.md docs/LICENSE docs/CHANGELOG.md $(filter-out docs/LICENSE docs/CHANGELOG.md,\
        $(wildcard docs/*.md))

install: lb/twlb $(MAN_PAGES)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
	  $(DESTDIR)$(DOCDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(SYSTEMDUNITDIR) \
	  $(DESTDIR)$(SYSCONFDIR)/twlb
	install -m 755 lb/twlb $(DESTDIR)$(SBINDIR)/twlb
	gzip -9n < build/man/twlb.8 > $(DESTDIR)$(MANDIR)/man8/twlb.8.gz
	gzip -9n < build/man/twlb.json.5 > $(DESTDIR)$(MANDIR)/man5/twlb.json.5.gz
	chmod 644 $(DESTDIR)$(MANDIR)/man8/twlb.8.gz $(DESTDIR)$(MANDIR)/man5/twlb.json.5.gz
	sed -e 's|/usr/local/sbin/twlb|$(SBINDIR)/twlb|g' \
	    -e 's|/usr/local/share/doc/twlb|$(DOCDIR)|g' config/systemd/twlb.service \
	  > $(DESTDIR)$(SYSTEMDUNITDIR)/twlb.service
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/twlb.service
	install -m 644 config/twlb.schema.json $(DESTDIR)$(DATADIR)/twlb.schema.json
	install -m 644 config/examples/production.json $(DESTDIR)$(DATADIR)/twlb.json.example
	install -m 644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/twlb/twlb.json ]; then \
	  echo "keeping $(DESTDIR)$(SYSCONFDIR)/twlb/twlb.json (the example is $(DATADIR)/twlb.json.example)"; \
	else \
	  echo "install -m 644 config/examples/production.json $(DESTDIR)$(SYSCONFDIR)/twlb/twlb.json"; \
	  install -m 644 config/examples/production.json $(DESTDIR)$(SYSCONFDIR)/twlb/twlb.json; \
	fi

# make deb: make install into a staging root as Debian lays it out, then dpkg-deb.
# Depends come from dpkg-shlibdeps (the runtime libraries: libuv1, libjansson4, libc6);
# /etc/twlb/twlb.json is a conffile; the maintainer scripts in config/debian/ create the
# system user and enable the unit with deb-systemd-helper.
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
DEB      := build/twlb_$(VERSION)_$(DEB_ARCH).deb
DEB_ROOT := build/deb/debian/twlb
deb: $(DEB)
$(DEB): lb/twlb $(MAN_PAGES) config/debian/control.in config/debian/postinst \
        config/debian/prerm config/debian/postrm config/systemd/twlb.service \
        config/examples/production.json config/twlb.schema.json $(DOCS)
	rm -rf build/deb
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(DEB_ROOT) PREFIX=/usr \
	  SYSTEMDUNITDIR=/lib/systemd/system
	strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	  $(DEB_ROOT)/usr/sbin/twlb
	{ echo 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/'; \
	  echo 'Upstream-Name: twlb'; echo; echo 'Files: *'; \
	  echo 'Copyright: 2026 The twlb authors'; echo 'License: MIT'; \
	  sed -e 's/^$$/./' -e 's/^/ /' docs/LICENSE; } > $(DEB_ROOT)/usr/share/doc/twlb/copyright
	mkdir -p $(DEB_ROOT)/DEBIAN build/deb/debian
	printf 'Source: twlb\n\nPackage: twlb\nArchitecture: any\n' > build/deb/debian/control
	cd build/deb && dpkg-shlibdeps -O -e debian/twlb/usr/sbin/twlb | sed -n 's/^shlibs:Depends=//p' \
	  > depends
	test -s build/deb/depends
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(DEB_ARCH)/' \
	    -e "s/@DEPENDS@/$$(cat build/deb/depends)/" \
	    -e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f1)/" \
	    config/debian/control.in > $(DEB_ROOT)/DEBIAN/control
	echo /etc/twlb/twlb.json > $(DEB_ROOT)/DEBIAN/conffiles
	install -m 755 config/debian/postinst config/debian/prerm config/debian/postrm \
	  $(DEB_ROOT)/DEBIAN/
	cd $(DEB_ROOT) && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print \
	  | sed 's|^\./||' | LC_ALL=C sort | xargs md5sum > DEBIAN/md5sums
	dpkg-deb --root-owner-group -Zxz --build $(DEB_ROOT) $@

# Debian's python3-jsonschema is for /usr/bin/python3 only (a python3 earlier in PATH,
# e.g. pyenv's, does not see it).
package-test: lb/twlb $(BUILD)/tools/config_keys $(MAN_PAGES)
	/usr/bin/python3 tests/package/run.py

# lint.py's own tests (fixture trees in a temp dir) first, then lb/ itself.
lint-selftest:
	python3 tests/lint/test_lint.py
lint: lint-selftest
	python3 tests/lint/lint.py

test: deps
	$(MAKE) all
	$(MAKE) lint
	@if command -v clang >/dev/null; then $(MAKE) clang; \
	 else echo "SKIP make clang: clang is not installed (apt-get install clang)"; fi
	$(MAKE) unit
	$(MAKE) package-test
	$(MAKE) unit-san
	$(MAKE) fuzz-replay
	$(MAKE) integration
	$(MAKE) integration-san
	$(MAKE) scale-test

# Every corpus file and every saved crash of each fuzz target, once, under ASan + UBSan
# (gcc; a replay main stands in for libFuzzer).
fuzz-replay:
	$(MAKE) SANITIZER=1 $(FUZZ_TARGETS:%=build/san/fuzz/replay_%)
	@set -e; for t in $(FUZZ_TARGETS); do echo "== replay $$t"; \
	  build/san/fuzz/replay_$$t tests/fuzz/$$t/corpus tests/fuzz/$$t/crashes; done

# clang and libFuzzer are needed by make fuzz only (not by make deps or make test).
deps-fuzz: deps
	@$(call apt_install,$(DEB_PKGS_FUZZ))

# Each harness for FUZZ_SECONDS, its corpus growing in build/fuzz/corpus/<target> from the
# committed seeds; a crash is saved under tests/fuzz/<target>/crashes/ and fails the run.
# Paths are absolute: a harness may change directory (fuzz_simulate does).
fuzz: deps-fuzz
	$(MAKE) FUZZ=1 $(FUZZ_TARGETS:%=build/fuzz/fuzz/fuzz_%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t tests/fuzz/$$t/crashes; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  build/fuzz/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -rss_limit_mb=2048 -max_len=16384 -close_fd_mask=1 -print_final_stats=1 \
	    -artifact_prefix=$(CURDIR)/tests/fuzz/$$t/crashes/ \
	    $(CURDIR)/build/fuzz/corpus/$$t $(CURDIR)/tests/fuzz/$$t/corpus; \
	done

run: deps
	$(MAKE) all
	./tests/demo.sh

# HAProxy and nginx are only needed to compare against them.
deps-bench: deps
	@$(call apt_install,haproxy nginx libnginx-mod-stream redis-tools wrk)

bench: deps-bench
	$(MAKE) all $(BENCH_BINS)
	@set -e; for b in $(BENCH_BINS); do echo "== $$b"; $$b; done
	python3 tests/bench/proxies.py --doc docs/benchmarks.md

# Long port-exhaustion scenarios in network namespaces (about 45 minutes with the
# defaults; DURATION=seconds per run, SCENARIOS=1,2,3,4, PROXIES=...).
stress: deps-bench
	$(MAKE) all
	python3 tests/stress/run.py

clean:
	rm -rf build lb/twlb backends/twbackend tests/stress/twstress

-include $(shell find build -name '*.d' 2>/dev/null)
