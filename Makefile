# virtmiti: see README.md. Every target runs from a fresh clone after `npm ci`.
SHELL := /bin/bash
NODE ?= node
ESBUILD := node_modules/.bin/esbuild
BUNDLE_FLAGS := --bundle --platform=node --format=esm --target=node18 --log-level=warning \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"

.PHONY: all build typecheck bundle schemas fixtures test run bench clean

all: build

build: typecheck bundle

typecheck:
	npx tsc --noEmit -p .

# Full CLI. Split into chunks so that each command parses only the code it runs (one 1.3 MB file
# cost 40-60 ms of compile on every start, measured with node --cpu-prof); koffi stays external:
# a native module loaded only by the KVM tier (host/vmm/kvm/ffi.ts).
dist/virtmiti.mjs: $(shell find bin contract guest host -name '*.ts' ! -name '*.test.ts') package.json
	rm -rf dist/chunks
	$(ESBUILD) bin/virtmiti.ts $(BUNDLE_FLAGS) --splitting --outdir=dist --out-extension:.js=.mjs --chunk-names=chunks/[name]-[hash] --external:koffi
	chmod +x $@

# The self-contained guest agent: one file, plain node >= 18, no node_modules (see guest/bundle/build.mjs).
dist/virtmiti-guest.cjs: $(shell find bin contract guest -name '*.ts' ! -name '*.test.ts') guest/bundle/build.mjs package.json
	$(NODE) guest/bundle/build.mjs --quiet

bundle: dist/virtmiti.mjs dist/virtmiti-guest.cjs

# Unit, property, scenario (sim + kvm) and one live QEMU boot under node-tap with coverage
# thresholds (.taprc); then the scenario catalog on every tier with the CI set of QEMU boots
# (4 CPU models x 2 command lines, about 20 s each); the last line is the plain summary.
test: bundle
	@mkdir -p .cache
	set -o pipefail; npx tap 2>&1 | tee .cache/tap.log
	set -o pipefail; $(NODE) dist/virtmiti.mjs scenarios run --tier all --qemu-set ci 2>&1 >.cache/scenarios.tap | tee .cache/scenarios.err \
	  || { cat .cache/scenarios.tap; exit 1; }
	@$(NODE) scripts/test-summary.mjs

# The main job: the built-in scenario catalog on every tier this machine has (tiers it lacks are
# skipped with the reason), then a read-only probe of this machine. The probe's verdict is the
# job's answer, not its failure: 0 protected, 1 at risk or vulnerable, 3 could not tell (e.g. no
# msr driver); only 2 (usage or input error) fails the job.
run: bundle
	$(NODE) dist/virtmiti.mjs scenarios run --tier all --qemu-set ci
	$(NODE) dist/virtmiti.mjs guest probe; rc=$$?; test $$rc -ne 2

# Benchmarks (numbers, never assertions): probe start-up and per-CPU cost, the guest bundle's probe
# (issue 15 goals: <= 1.3x node -e 0, < 50 us per CPU at 256 CPUs), the 256-vCPU simulated report,
# KVM round trips and live scenarios (exit 4 = no usable /dev/kvm), QEMU boot to verdict against a
# bare boot (goal <= 1.5x; exit 4 = no QEMU), and the exhaustive scenario matrix.
bench: bundle
	$(NODE) bench/probe.mjs
	$(NODE) bench/probe.mjs --bundle dist/virtmiti-guest.cjs --goal-ratio 1.3
	$(NODE) bench/report.mjs
	$(ESBUILD) host/vmm/kvm/bench.ts --bundle --platform=node --format=esm --packages=external --log-level=warning --outfile=.cache/kvm-bench.mjs
	$(NODE) .cache/kvm-bench.mjs; rc=$$?; test $$rc -eq 0 -o $$rc -eq 4
	$(ESBUILD) host/vmm/live/bench.ts --bundle --platform=node --format=esm --packages=external --log-level=warning --outfile=.cache/live-bench.mjs
	$(NODE) .cache/live-bench.mjs; rc=$$?; test $$rc -eq 0 -o $$rc -eq 4
	$(ESBUILD) bench/boot.ts --bundle --platform=node --format=esm --packages=external --log-level=warning --outfile=.cache/boot-bench.mjs
	$(NODE) .cache/boot-bench.mjs; rc=$$?; test $$rc -eq 0 -o $$rc -eq 4
	$(ESBUILD) host/qemu/kvm-payload-bench.ts --bundle --platform=node --format=esm --packages=external --log-level=warning --outfile=.cache/qemu-kvm-bench.mjs
	$(NODE) .cache/qemu-kvm-bench.mjs; rc=$$?; test $$rc -eq 0 -o $$rc -eq 4
	$(NODE) dist/virtmiti.mjs scenarios run --tier sim --exhaustive > /dev/null

# Replay fixtures (guest/fixtures/) from the CPU catalog (scenarios/cpus/); a test checks they are current.
# JSON Schema files (contract/schemas/) generated from the zod schemas; a test keeps them current.
schemas:
	$(ESBUILD) scripts/gen-schemas.ts --bundle --platform=node --format=esm --packages=external --log-level=warning --outfile=.cache/gen-schemas.mjs
	$(NODE) .cache/gen-schemas.mjs contract/schemas

fixtures:
	$(ESBUILD) scripts/gen-fixtures.ts --bundle --platform=node --format=esm --packages=external --log-level=warning --outfile=.cache/gen-fixtures.mjs
	$(NODE) .cache/gen-fixtures.mjs

clean:
	rm -rf build dist .tap coverage
