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
	if want := configdoc.Render(config.Vars(), config.DemoVars()); !bytes.Equal(got, want) {
		t.Error("docs/configuration.md is stale: run go generate ./internal/configdoc")
	}
}

func TestRenderEscapesCells(t *testing.T) {
	page := string(configdoc.Render([]config.Var{
		{Name: "KH_X", Default: "a|b", Help: "one | two"},
		{Name: "KH_Y", Help: "short", Doc: "line\nbreak | long"},
	}, nil))
	for _, want := range []string{"| `KH_X` | `a\\|b` | one \\| two |\n", "| `KH_Y` |  | line break \\| long |\n"} {
		if !strings.Contains(page, want) {
			t.Errorf("page\n%s\nlacks %q", page, want)
		}
	}
}
