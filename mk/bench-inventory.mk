.PHONY: bench-inventory bench-inventory-quick

bench-inventory: ## Inventory pass vs bare dump vs ss at 200k sockets, and 100 namespaces (root; BENCH_CONNS to resize).
	scripts/bench-inventory.sh

bench-inventory-quick: ## The inventory benchmark at 20k sockets and 10 small namespaces (root, ~15 s).
	BENCH_CONNS=10000 BENCH_NS=10 BENCH_NS_CONNS=200 scripts/bench-inventory.sh
