# khproxy: a static binary on distroless, running as nonroot.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t khproxy .
#
# The build command below is also run by TestDockerfileBuild, so keep it on
# one RUN line that starts with "CGO_ENABLED=0 go build" and ends with "-o OUT .".

FROM golang:1.26 AS build
# VERSION is what `khproxy version`, the startup log line and
# khproxy_build_info report. Without it the binary reports "(devel)".
ARG VERSION=
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/khproxy .

# static: no libc, no shell; nonroot: uid and gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/khproxy /khproxy
USER 65532:65532
# khproxy writes no files, so a read-only root filesystem is fine; a Unix
# socket (KH_LISTEN=unix:...) belongs on a mounted volume.
# 8080: the signing listener, loopback by default: in a Kubernetes pod the
# app container reaches the sidecar on 127.0.0.1 (or use a Unix socket).
# 9090: the admin listener (KH_ADMIN_LISTEN): /healthz, /readyz, /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["/khproxy"]
