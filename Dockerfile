# khproxy: a static binary on distroless, running as nonroot.
# Build: docker build -t khproxy .
# The build command below is also run by TestDockerfileBuild, so keep it on
# one RUN line that starts with "CGO_ENABLED=0 go build".

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/khproxy .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/khproxy /khproxy
USER nonroot:nonroot
# Loopback by default: in a Kubernetes pod the app container reaches the
# sidecar on 127.0.0.1. Set KH_LISTEN to expose it further (khproxy warns).
EXPOSE 8080
ENTRYPOINT ["/khproxy"]
