# syntax=docker/dockerfile:1
#
# Build:  docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t chatgate:0.1.0 .
# Run:    docker run --rm -p 8080:8080 -p 9090:9090 chatgate:0.1.0
#
# Every flag can also be set with its CHATGATE_* environment variable
# (e.g. -e CHATGATE_LOG_FORMAT=json).

# Base images, pinned: the build stage to the Go release of go.mod's `go`
# line, the runtime to distroless's static image of Debian 12 (which has no
# version tags of its own). go test ./k8s/ keeps the Go version equal to
# go.mod's. To pin the exact image contents as well, append each image's
# digest (FROM golang:1.26.8@sha256:...); docs/deploy.md ("Pinned images")
# shows how to look digests up and refresh them.
FROM golang:1.26.8 AS build
ARG VERSION=dev
ARG REVISION=
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/chatgate ./cmd/chatgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/chatgate /chatgate
USER 65532:65532
# 8080: chat (web page and /ws); 9090: admin (/livez, /readyz, /metrics).
EXPOSE 8080 9090
ENTRYPOINT ["/chatgate"]
