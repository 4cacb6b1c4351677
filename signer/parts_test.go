package signer_test

import (
	"bytes"
	"testing"

	"khproxy/signer"
)

func TestBodyHashParts(t *testing.T) {
	tests := [][][]byte{
		nil,
		{{}},
		{[]byte("abc")},
		{[]byte("a"), nil, []byte("bc")},
		{bytes.Repeat([]byte{0xff}, 1000), []byte("\r\n")},
	}
	for _, parts := range tests {
		if got, want := signer.BodyHashParts(parts), signer.BodyHash(bytes.Join(parts, nil)); got != want {
			t.Errorf("BodyHashParts(%q) = %s, want %s", parts, got, want)
		}
	}
	if got := signer.BodyHashParts(nil); got != signer.EmptyBodyHash {
		t.Errorf("no parts: %s, want the empty hash", got)
	}
}
