# Convenience targets; each is a thin wrapper over an npm script so CI and humans run the same thing.
.PHONY: install test unit lint typecheck format up bench synth build security clean

install:
	npm ci

test:          ## lint, typecheck, every test (real Postgres included) with the coverage gate
	npm test

unit:          ## tests that need no Postgres
	npm run test:unit

lint:
	npm run lint

typecheck:
	npm run typecheck

format:
	npm run format

security:      ## dependency audit (needs the registry)
	npm audit --omit=dev --audit-level=high

up:            ## the whole pipeline locally, on the embedded default
	npm start

bench:
	npm run bench

synth:
	npm run synth

build:
	npm run build

clean:
	rm -rf dist coverage cdk.out
