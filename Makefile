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

# The static half runs offline (and in `npm test`): eslint-plugin-security and
# regexp/no-super-linear-backtracking, configured in eslint.config.mjs. The dependency audit asks the
# npm registry's audit endpoint, which the development machines cannot reach; the CI workflow runs
# this target where it can.
security:      ## security lint (offline) + dependency audit of what ships (needs the registry)
	npx eslint .
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
