# Convenience targets; each is a thin wrapper over an npm script so CI and humans run the same thing.
.PHONY: install test unit lint typecheck format up bench synth build security clean deploy destroy

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

# AWS (docs/deploy.md): both stacks, stateful first; context from cdk.json plus CONTEXT, e.g.
#   make deploy CONTEXT="--context totes:alarmEmail=data@example.com --context totes:sourceCidr=203.0.113.0/24"
CONTEXT ?=
deploy:        ## cdk deploy of both stacks (needs AWS credentials, a bootstrapped account, Docker)
	npx cdk deploy --all --require-approval broadening $(CONTEXT)

# Deletes the pipeline stack, then the stateful one; stream, buckets, secrets and warehouse are
# retained (docs/deploy.md, "Tear down"). Drop the replication slot on the source yourself.
destroy:       ## cdk destroy of both stacks (data is retained)
	npx cdk destroy Totes-Pipeline $(CONTEXT)
	npx cdk destroy Totes-Stateful $(CONTEXT)
