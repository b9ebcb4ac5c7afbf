# Dashboard, alert rules and Kubernetes manifests (owned with dashboards/,
# alerts/, deploy/kubernetes/ and internal/livetest/).
.PHONY: rules-test dashboard-lint kube-lint

rules-test: ## promtool check and unit tests of alerts/*.rules.yml (promtool: make deps).
	cd alerts && promtool check rules ghostd.rules.yml ghostd-fleet.rules.yml && \
	  promtool test rules ghostd.rules_test.yml ghostd-fleet.rules_test.yml

dashboard-lint: ## Parse and lint every query of dashboards/ghostd.json.
	$(GO) test -count=1 ./dashboards

kube-lint: ## Strictly decode deploy/kubernetes and check its security settings.
	$(GO) test -count=1 ./deploy/kubernetes

.PHONY: live-test
live-test: deps ## Dashboard queries and alert rules against a real Prometheus scraping ghostd (root).
	$(GO) test -count=1 -v -run Live ./internal/livetest
