# Developer shortcuts. CI runs .ci/run, which does not depend on this file.
GO ?= go

.PHONY: build test bench compare lint-k8s

# build puts chatgate and chatbench in the repository root (git-ignored).
build:
	$(GO) build -o . ./cmd/chatgate ./cmd/chatbench

test:
	$(GO) test -race -count=1 ./...

# bench runs every Go benchmark (hub fan-out, encoding, the writer, the
# metrics hot path, chatbench's own parser) with allocations, and no tests.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# compare runs chatgate and the gorilla chat example side by side (issue
# 16's scenarios, 3 repetitions, pinned with taskset; about 10 minutes) and
# prints a markdown table; compare-out/ holds every run. Run it on a quiet
# machine. COMPARE_FLAGS passes flags, e.g. COMPARE_FLAGS='--scenarios idle
# --reps 5'; see docs/benchmarks.md.
compare:
	$(GO) build -o . ./cmd/chatbench
	./chatbench compare $(COMPARE_FLAGS)

# lint-k8s renders every k8s/ overlay and scores it with kube-score (what
# .ci/run does); go test ./k8s/ checks the invariants.
lint-k8s:
	bash .ci/lint-k8s
