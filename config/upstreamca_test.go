package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"khproxy/config"
	"khproxy/internal/testutil"
)

// writeCA writes a self-signed CA certificate as PEM (with extra, before it)
// and returns the file and the certificate.
func writeCA(t *testing.T, extra string) (string, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "khproxy test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	data := extra + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, cert
}

func TestUpstreamCAFile(t *testing.T) {
	keyBlock := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not for us")}))
	path, ca := writeCA(t, "# our CA\n"+keyBlock)
	c, warns, err := config.Load(environ("KH_UPSTREAM_CA_FILE", path))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings = %v, want none", warns)
	}
	if len(c.UpstreamCAs) != 1 || !c.UpstreamCAs[0].Equal(ca) {
		t.Errorf("UpstreamCAs = %v, want the file's one certificate (the key block skipped)", c.UpstreamCAs)
	}

	_, warns, err = config.Load(environ("KH_UPSTREAM_CA_FILE", path, "KH_UPSTREAM", "http://127.0.0.1:9/cp/kh_reseller_api"))
	if err != nil || len(warns) != 1 || warns[0].Var != "KH_UPSTREAM_CA_FILE" {
		t.Errorf("with a plain http upstream: warnings %v, err %v; want one for KH_UPSTREAM_CA_FILE", warns, err)
	}

	c, _, err = config.Load(environ())
	if err != nil {
		t.Fatal(err)
	}
	if c.UpstreamCAs != nil {
		t.Errorf("unset: UpstreamCAs = %v, want nil (system roots only)", c.UpstreamCAs)
	}
}

func TestUpstreamCAFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string { return testutil.WriteFile(t, dir, name, content) }
	tests := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.pem"), "no such file"},
		{"directory", dir, "is a directory"},
		{"empty", write("empty.pem", "\n"), "no PEM certificate"},
		{"not PEM", write("der.pem", "\x30\x82\x01\x0a garbage"), "no PEM certificate"},
		{"only a key", write("key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))), "no PEM certificate"},
		{"broken certificate", write("broken.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")}))), "block 1 is not a valid certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := config.Load(environ("KH_UPSTREAM_CA_FILE", tt.path))
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.Contains(err.Error(), "KH_UPSTREAM_CA_FILE") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want one naming KH_UPSTREAM_CA_FILE that says %q", err, tt.want)
			}
		})
	}
}
