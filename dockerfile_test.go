package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfileImage: the Dockerfile's base images name a version (a tag
// that is not latest, or a digest), its final stage carries the OCI labels
// that say what the image is, and it sets no GOMEMLIMIT (khproxy sets 90%
// of the container's limit).
func TestDockerfileImage(t *testing.T) {
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^ARG (\w+)=(\S+)$`).FindAllStringSubmatch(string(df), -1) {
		args[m[1]] = m[2]
	}
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(string(df), -1)
	if len(froms) != 2 {
		t.Fatalf("%d FROM lines, want 2 (build and runtime)", len(froms))
	}
	for _, f := range froms {
		image := f[1]
		if m := regexp.MustCompile(`^\$\{(\w+)\}$`).FindStringSubmatch(image); m != nil {
			image = args[m[1]]
		}
		name, digest, _ := strings.Cut(image, "@")
		tag := ""
		if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
			tag = name[i+1:]
		}
		if digest == "" && (tag == "" || tag == "latest") {
			t.Errorf("base image %q names no version", image)
		}
	}
	final := string(df[strings.LastIndex(string(df), "\nFROM "):])
	for _, label := range []string{"title", "description", "version", "revision", "created", "base.name"} {
		if !strings.Contains(final, "org.opencontainers.image."+label+"=") {
			t.Errorf("the final stage has no org.opencontainers.image.%s label", label)
		}
	}
	if regexp.MustCompile(`(?m)^ENV .*GOMEMLIMIT`).Match(df) {
		t.Error("the Dockerfile sets GOMEMLIMIT")
	}
}
