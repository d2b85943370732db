.PHONY: run test lint audit ci bench

run:  ## keyward on embedded defaults (SQLite, dev mode, demo org)
	./scripts/run

test:  ## the whole test suite
	./scripts/test

lint:  ## ruff + migrations check
	./scripts/lint

bench:  ## every benchmark under bench/ (prints figures, e.g. audit export peak memory)
	./scripts/bench

audit:  ## security checks: pip-audit over requirements.txt, bandit over the code (docs/security.md)
	./scripts/audit

ci:  ## what CI runs: both test passes, lint, deploy check, security checks
	./.ci/run
