package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
)

// UpstreamRoots returns the CAs to trust for an https upstream: the system's
// roots plus the certificates in KH_UPSTREAM_CA_FILE, read now. It returns
// nil, meaning the system's roots only, when the variable is unset. Load has
// checked the file; an error here means it changed since.
func (c Config) UpstreamRoots() (*x509.CertPool, error) {
	if c.UpstreamCAFile == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(c.UpstreamCAFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CA file: %w", err)
	}
	certs, err := parseCertificates(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.UpstreamCAFile, err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		// No system roots here (a scratch image): trust the file alone.
		roots = x509.NewCertPool()
	}
	for _, cert := range certs {
		roots.AddCert(cert)
	}
	return roots, nil
}

// validateUpstreamCA checks KH_UPSTREAM_CA_FILE, when set, and reports what is
// wrong with it through add and warn (validate's own).
func (c *Config) validateUpstreamCA(add func(name, format string, a ...any), warn func(name, msg string)) {
	const name = "KH_UPSTREAM_CA_FILE"
	if _, err := c.UpstreamRoots(); err != nil {
		add(name, "%w", err)
		return
	}
	if u, err := url.Parse(c.Upstream); err == nil && u.Scheme == "http" && c.UpstreamCAFile != "" {
		warn(name, "is set but KH_UPSTREAM is plain http: the CAs are not used")
	}
}

// parseCertificates returns the certificates of the CERTIFICATE blocks in a
// PEM file; other blocks are skipped. A file without any, or with a block
// that does not parse, is an error.
func parseCertificates(raw []byte) ([]*x509.Certificate, error) {
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
			return nil, fmt.Errorf("PEM block %d is not a valid certificate: %w", n, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("holds no PEM certificate (want blocks starting -----BEGIN CERTIFICATE-----)")
	}
	return certs, nil
}
