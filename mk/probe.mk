# probe: measurements on the test network (as root).
.PHONY: probe-measure probe-bench

probe-measure: ## Log what a dead peer's RST does for each probe ACK choice, and blind probes through the conntrack router.
	$(GO) test -count=1 -run 'TestRSTMeasurement|TestBlindThroughRouter|TestRateLimitOnTheWire|TestNoDisturbance' -v ./probe/ | grep -E 'ResetLocal=|blind through|probes in|rounds over|^(ok|FAIL|---)'

probe-bench: ## Verdicts/s over 10k live suspects (unlimited and default rate) and memory per in-flight probe.
	$(GO) test -run '^$$' -bench BenchmarkVerdicts -benchtime 3x -timeout 20m ./probe/
