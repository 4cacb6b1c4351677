# khproxy: a static binary on distroless, running as nonroot.
#
#   docker build \
#     --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) \
#     -t khproxy:$(git describe --tags --always) .
#
# The build command below is also run by TestDockerfileBuild, so keep it on
# one RUN line that starts with "CGO_ENABLED=0 go build" and ends with "-o OUT .".
#
# Base images: a fixed version each. For a reproducible build pin them by
# digest as well, resolving the current digests where you build:
#   docker buildx imagetools inspect golang:1.26.8
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot
# and passing --build-arg GO_IMAGE=golang:1.26.8@sha256:<digest>
# --build-arg RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:<digest>
# (or writing them below). No digest is written here: none could be
# verified where this file was last edited, and a made-up one fails the
# build.
ARG GO_IMAGE=golang:1.26.8
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
# VERSION is what `khproxy version`, the startup log line and
# khproxy_build_info report. Without it the binary reports "(devel)".
ARG VERSION=
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/khproxy .

# static: no libc, no shell; nonroot: uid and gid 65532.
FROM ${RUNTIME_IMAGE}
ARG RUNTIME_IMAGE
ARG VERSION=
ARG REVISION=
ARG CREATED=
# OCI image annotations (github.com/opencontainers/image-spec, annotations.md).
LABEL org.opencontainers.image.title="khproxy" \
      org.opencontainers.image.description="Local signing reverse proxy for the KernelHost Reseller API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
COPY --from=build /out/khproxy /khproxy
USER 65532:65532
# khproxy writes no files, so a read-only root filesystem is fine; a Unix
# socket (KH_LISTEN=unix:...) belongs on a mounted volume.
# 8080: the signing listener, loopback by default: in a Kubernetes pod the
# app container reaches the sidecar on 127.0.0.1 (or use a Unix socket).
# 9090: the admin listener (KH_ADMIN_LISTEN): /healthz, /readyz, /metrics.
# No GOMEMLIMIT: khproxy sets the soft limit to 90% of the container's
# memory limit itself when GOMEMLIMIT is unset.
EXPOSE 8080 9090
ENTRYPOINT ["/khproxy"]
