# Install, uninstall and package ghostd (owner: packaging). See docs/ghostd.8.
#
# `make install` is for a host without the package: it installs under
# PREFIX (default /usr/local), points the unit's ExecStart there and puts the
# unit in /etc/systemd/system, as a local administrator's unit. The .deb and
# .rpm install /usr/bin/ghostd and the unit in the distribution's unit dir.
# DESTDIR is honoured by both install and uninstall.
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR    ?= $(SYSCONFDIR)/systemd/system
DIST       ?= dist
NFPM       := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
# Package version from git: v1.2.3 tags give 1.2.3 (1.2.3+git5.gabc1234
# past the tag); before the first tag, 0.0.0+gitN.gSHA.
PKG_VERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null) && { echo "$${v\#v}" | sed -E 's/-([0-9]+)-g/+git\1.g/'; } || echo "0.0.0+git$$(git rev-list --count HEAD 2>/dev/null || echo 0).g$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")
PKG_ARCH   ?= $(shell $(GO) env GOARCH)

.PHONY: install uninstall deb rpm dist-bin

dist-bin:
	@mkdir -p $(DIST)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/ghostd ./cmd/ghostd
	gzip -9nc docs/ghostd.8 > $(DIST)/ghostd.8.gz

install: dist-bin ## Install ghostd, its unit, man page and example config (PREFIX=/usr/local, DESTDIR; never overwrites /etc/ghostd/ghostd.yml).
	install -D -m 0755 $(DIST)/ghostd $(DESTDIR)$(PREFIX)/bin/ghostd
	install -D -m 0644 $(DIST)/ghostd.8.gz $(DESTDIR)$(PREFIX)/share/man/man8/ghostd.8.gz
	install -D -m 0644 systemd/ghostd-kill.conf $(DESTDIR)$(PREFIX)/share/ghostd/kill.conf
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/bin/ghostd|$(PREFIX)/bin/ghostd|' \
	    -e 's|/etc/ghostd/ghostd.yml|$(SYSCONFDIR)/ghostd/ghostd.yml|' \
	    -e 's|/etc/default/ghostd|$(SYSCONFDIR)/default/ghostd|' \
	    -e 's|/usr/share/ghostd/|$(PREFIX)/share/ghostd/|' \
	    systemd/ghostd.service > $(DESTDIR)$(UNITDIR)/ghostd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/ghostd.service
	@for f in ghostd/ghostd.yml:packaging/ghostd.yml default/ghostd:packaging/default; do \
	  dst=$(DESTDIR)$(SYSCONFDIR)/$${f%%:*}; src=$${f#*:}; \
	  if [ -e "$$dst" ]; then echo "install: keeping existing $$dst"; \
	  else echo "install -D -m 0644 $$src $$dst"; install -D -m 0644 "$$src" "$$dst"; fi; \
	done
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	  echo "now: systemctl daemon-reload && systemctl enable --now ghostd"; fi

uninstall: ## Remove what `make install` installed; keeps /etc/ghostd/ghostd.yml and /etc/default/ghostd if edited.
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	  systemctl disable --now ghostd.service 2>/dev/null || true; fi
	rm -f $(DESTDIR)$(PREFIX)/bin/ghostd $(DESTDIR)$(PREFIX)/share/man/man8/ghostd.8.gz \
	  $(DESTDIR)$(PREFIX)/share/ghostd/kill.conf $(DESTDIR)$(UNITDIR)/ghostd.service
	-rmdir $(DESTDIR)$(PREFIX)/share/ghostd 2>/dev/null
	@for f in ghostd/ghostd.yml:packaging/ghostd.yml default/ghostd:packaging/default; do \
	  dst=$(DESTDIR)$(SYSCONFDIR)/$${f%%:*}; src=$${f#*:}; \
	  if [ -e "$$dst" ] && ! cmp -s "$$src" "$$dst"; then echo "uninstall: keeping edited $$dst"; \
	  else rm -f "$$dst"; fi; \
	done
	-rmdir $(DESTDIR)$(SYSCONFDIR)/ghostd 2>/dev/null
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

deb: dist-bin ## Build dist/ghostd_VERSION_ARCH.deb with nfpm (enables and starts the service on install).
	DIST=$(DIST) VERSION=$(PKG_VERSION) ARCH=$(PKG_ARCH) $(GO) run $(NFPM) package -p deb -f packaging/nfpm.yaml -t $(DIST)/

rpm: dist-bin ## Build dist/ghostd-VERSION.ARCH.rpm with nfpm.
	DIST=$(DIST) VERSION=$(PKG_VERSION) ARCH=$(PKG_ARCH) $(GO) run $(NFPM) package -p rpm -f packaging/nfpm.yaml -t $(DIST)/
