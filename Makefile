# Developer shortcuts. CI runs .ci/run, which does not depend on this file.
GO ?= go

.PHONY: build test bench lint-k8s

# build puts chatgate and chatbench in the repository root (git-ignored).
build:
	$(GO) build -o . ./cmd/chatgate ./cmd/chatbench

test:
	$(GO) test -race -count=1 ./...

# bench runs every Go benchmark (hub fan-out, encoding, the writer, the
# metrics hot path, chatbench's own parser) with allocations, and no tests.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# lint-k8s renders every k8s/ overlay and scores it with kube-score (what
# .ci/run does); go test ./k8s/ checks the invariants.
lint-k8s:
	bash .ci/lint-k8s
