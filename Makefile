.PHONY: run test lint ci bench

run:  ## keyward on embedded defaults (SQLite, dev mode, demo org)
	./scripts/run

test:  ## the whole test suite
	./scripts/test

lint:  ## ruff + migrations check
	./scripts/lint

bench:  ## every benchmark under bench/ (prints figures, e.g. audit export peak memory)
	./scripts/bench

ci:  ## what CI runs: both test passes, lint, deploy check
	./.ci/run
