.PHONY: run test lint ci

run:  ## keyward on embedded defaults (SQLite, dev mode, demo org)
	./scripts/run

test:  ## the whole test suite
	./scripts/test

lint:  ## ruff + migrations check
	./scripts/lint

ci:  ## what CI runs: both test passes, lint, deploy check
	./.ci/run
