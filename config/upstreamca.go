package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// parseCAFile reads KH_UPSTREAM_CA_FILE: the certificates of its CERTIFICATE
// blocks; other blocks are skipped. A file that cannot be read, holds no
// certificate, or has a block that does not parse is an error.
func parseCAFile(path string) (any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, raw = pem.Decode(raw)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d is not a valid certificate: %w", path, n, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: %w", path, errNoCertificate)
	}
	return certs, nil
}

var errNoCertificate = errors.New("holds no PEM certificate (want blocks starting -----BEGIN CERTIFICATE-----)")

// validateUpstreamCAs warns when CAs are given for an upstream that does not
// use TLS.
func (c *Config) validateUpstreamCAs(v *validation) {
	if len(c.UpstreamCAs) > 0 && c.Upstream.Scheme == "http" {
		v.warn("KH_UPSTREAM_CA_FILE", "is set but KH_UPSTREAM is plain http: the CAs are not used")
	}
}
