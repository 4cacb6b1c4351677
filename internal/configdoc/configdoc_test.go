package configdoc_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"khproxy/config"
	"khproxy/internal/configdoc"
)

// The committed page is what the code renders: a setting added, removed or
// reworded in package config must be followed by go generate.
func TestPageIsCurrent(t *testing.T) {
	got, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := configdoc.Render(config.Vars()); !bytes.Equal(got, want) {
		t.Error("docs/configuration.md is stale: run go generate ./internal/configdoc")
	}
}

func TestRenderEscapesCells(t *testing.T) {
	page := string(configdoc.Render([]config.Var{{Name: "KH_X", Default: "a|b", Help: "one | two", Doc: "line\nbreak"}}))
	want := "| `KH_X` | `a\\|b` | one \\| two line break |\n"
	if !strings.HasSuffix(page, want) {
		t.Errorf("last row of\n%s\nwant %q", page, want)
	}
}
