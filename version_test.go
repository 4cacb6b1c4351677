package main

import (
	"runtime/debug"
	"testing"
)

func TestVersionFrom(t *testing.T) {
	tests := []struct {
		name     string
		main     string
		settings map[string]string
		want     string
	}{
		{"go install module@version", "v1.4.0", nil, "v1.4.0"},
		{"pseudo-version", "v0.0.0-20250101000000-0123456789ab", nil, "v0.0.0-20250101000000-0123456789ab"},
		{"local build with VCS", "(devel)", map[string]string{"vcs.revision": "0123456789abcdef0123", "vcs.modified": "false"}, "devel-0123456789ab"},
		{"local build with changes", "(devel)", map[string]string{"vcs.revision": "0123456789abcdef0123", "vcs.modified": "true"}, "devel-0123456789ab-dirty"},
		{"short revision", "", map[string]string{"vcs.revision": "abc"}, "devel-abc"},
		{"no VCS (-buildvcs=false)", "(devel)", nil, "(devel)"},
		{"nothing at all", "", nil, "(devel)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bi := &debug.BuildInfo{Main: debug.Module{Path: "khproxy", Version: tt.main}}
			for k, v := range tt.settings {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: k, Value: v})
			}
			if got := versionFrom(bi); got != tt.want {
				t.Errorf("versionFrom = %q, want %q", got, tt.want)
			}
		})
	}
}
