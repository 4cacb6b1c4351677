package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is stamped at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" .
//
// Empty means: ask the build info (see buildVersion).
var version string

// buildVersion returns the stamped version, else the module version of a
// `go install khproxy@v1.2.3` build, else the VCS revision the binary was
// built from ("devel-0123456789ab", "-dirty" with local changes), else
// "(devel)".
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	return versionFrom(bi)
}

// versionFrom is buildVersion's fallback, given the build info.
func versionFrom(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "(devel)"
	}
	v := "devel-" + rev[:min(len(rev), 12)]
	if dirty {
		v += "-dirty"
	}
	return v
}

// printVersion is `khproxy version`: the version, then the Go version and
// platform, like `go version`.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "khproxy %s %s %s/%s\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
