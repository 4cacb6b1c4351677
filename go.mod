module khproxy

go 1.26.0

require (
	github.com/caarlos0/env/v11 v11.4.2
	github.com/lmittmann/tint v1.2.1
)

require github.com/hashicorp/golang-lru/v2 v2.0.7
