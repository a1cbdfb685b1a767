# Portcullis. `make demo` and `make test` are the two set-up commands; both
# install the Debian packages they need when run as root.
export PATH := $(PATH):/usr/local/go/bin
GO      ?= go
CLANG   ?= clang-14
BACKEND ?= nftables
BIN     := bin
PREFIX  ?= /usr/local

# Debian packages per purpose (checked by command, installed when missing).
PKGS_TEST  := iproute2:ip nftables:nft iputils-ping:ping containernetworking-plugins:/usr/lib/cni/host-local
PKGS_GEN   := clang-14:clang-14 llvm-14:llc-14 libbpf-dev:/usr/include/bpf/bpf_helpers.h
PKGS_BENCH := iperf3:iperf3 iptables:iptables-legacy nftables:nft containernetworking-plugins:/usr/lib/cni/portmap

.PHONY: all build generate check-generate test unit conformance demo bench bench-quick install uninstall clean deps-test deps-gen deps-bench deps-docker deps-podman

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# install-missing PKG:CMD... installs each package whose command (or file) is absent.
define install-missing
	@missing=""; for pc in $(1); do p=$${pc%%:*}; c=$${pc#*:}; \
	  if [ "$${c#/}" != "$$c" ]; then [ -e "$$c" ] || missing="$$missing $$p"; \
	  else command -v "$$c" >/dev/null 2>&1 || missing="$$missing $$p"; fi; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run as root to install them)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

CNITOOL_VERSION := v1.3.1
deps-test:
	$(call install-missing,$(PKGS_TEST))
	@command -v cnitool >/dev/null 2>&1 || [ -x "$$($(GO) env GOPATH)/bin/cnitool" ] || \
	  $(GO) install github.com/containernetworking/cni/cnitool@$(CNITOOL_VERSION)
# The Docker profile needs a real engine. Debian's docker.io starts dockerd
# in the root namespace when installed, unless policy-rc.d forbids starting
# services (exit 101), so it is installed only where that holds; elsewhere
# the Docker rows skip and say why.
deps-docker:
	@if ! command -v dockerd >/dev/null 2>&1 || [ ! -x /bin/busybox ]; then \
	  /usr/sbin/policy-rc.d docker start >/dev/null 2>&1; rc=$$?; \
	  if [ "$$rc" = 101 ] && [ "$$(id -u)" = 0 ]; then \
	    echo "installing: docker.io busybox-static"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io busybox-static >/dev/null; \
	  else echo "not installing docker.io: /usr/sbin/policy-rc.d does not forbid starting services here (or not root); the Docker rows will skip"; fi; \
	fi
# The Podman tests of portcullis-cni (cni/podman_test.go) need a real
# Podman with runc; its package brings services, so the same rule holds.
deps-podman:
	@if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 || [ ! -x /bin/busybox ]; then \
	  /usr/sbin/policy-rc.d podman start >/dev/null 2>&1; rc=$$?; \
	  if [ "$$rc" = 101 ] && [ "$$(id -u)" = 0 ]; then \
	    echo "installing: podman runc busybox-static containernetworking-plugins"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc busybox-static containernetworking-plugins >/dev/null; \
	  else echo "not installing podman: /usr/sbin/policy-rc.d does not forbid starting services here (or not root); the Podman tests will skip"; fi; \
	fi
deps-gen:
	$(call install-missing,$(PKGS_GEN))
deps-bench: deps-test
	$(call install-missing,$(PKGS_BENCH))

# Rebuild the eBPF objects with the pinned clang; they are committed.
generate: deps-gen
	cd dataplane/ebpf && BPF_CLANG=$(CLANG) $(GO) generate ./...

# Fails when regenerating changes the committed objects.
check-generate: generate
	git diff --exit-code -- '*_bpfel.go' '*_bpfel.o'

# Unit and kernel tests of every package, under the race detector (which
# needs cgo, so a C compiler); the conformance suite runs apart.
unit:
	$(call install-missing,gcc:gcc)
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /conformance$$)

conformance: deps-test deps-docker deps-podman build
	@mkdir -p $(BIN)
	PORTCULLISD=$(CURDIR)/$(BIN)/portcullisd $(GO) test -count=1 -timeout 30m ./conformance -run 'TestConformance|TestDocker' -v -args -backend=$(BACKEND) 2>&1 | tee $(BIN)/conformance-$(BACKEND).log; \
	  grep -q '^conformance: [0-9]* passed, 0 failed' $(BIN)/conformance-$(BACKEND).log

test: deps-test deps-podman build unit
	$(MAKE) --no-print-directory conformance BACKEND=nftables
	$(MAKE) --no-print-directory conformance BACKEND=ebpf

demo: deps-test deps-docker build
	$(BIN)/pcdemo
	@if command -v dockerd >/dev/null 2>&1 && [ -x /bin/busybox ]; then $(BIN)/pcdemo -docker; \
	  else echo "skipping the Docker walkthrough: no dockerd (see deps-docker)"; fi

bench: deps-test deps-bench deps-docker build
	$(BIN)/pcbench -out bench/results

bench-quick: deps-test deps-bench deps-docker build
	$(BIN)/pcbench -quick -out $(BIN)/bench-quick

install: build
	install -D -m 0755 $(BIN)/portcullisd $(DESTDIR)$(PREFIX)/bin/portcullisd
	install -D -m 0755 $(BIN)/pcctl $(DESTDIR)$(PREFIX)/bin/pcctl
	install -D -m 0755 $(BIN)/portcullis-cni $(DESTDIR)/opt/cni/bin/portcullis-cni
	install -D -m 0644 dist/portcullisd.service $(DESTDIR)/etc/systemd/system/portcullisd.service
	@# the operator's flags: installed once, never overwritten (nor removed by uninstall)
	[ -e $(DESTDIR)/etc/default/portcullisd ] || install -D -m 0644 dist/portcullisd.default $(DESTDIR)/etc/default/portcullisd

uninstall:
	-$(PREFIX)/bin/portcullisd uninstall
	rm -f $(DESTDIR)$(PREFIX)/bin/portcullisd $(DESTDIR)$(PREFIX)/bin/pcctl $(DESTDIR)/opt/cni/bin/portcullis-cni $(DESTDIR)/etc/systemd/system/portcullisd.service

clean:
	rm -rf $(BIN)
