package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocumentLinksResolve: every relative link in the README and docs/
// (and the benchmark history) names a file that exists and, with a
// #fragment in a Markdown file, a heading of that file.
func TestDocumentLinksResolve(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "README.md", "bench/results/history.md")
	anchors := map[string]map[string]bool{}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links(string(body)) {
			if err := resolve(f, l, anchors); err != nil {
				t.Errorf("%s: link %q: %v", f, l, err)
			}
		}
	}
}

// TestReadmeIsShort: the README is what a newcomer reads in five minutes;
// the rest belongs in docs/.
func TestReadmeIsShort(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(body), "\n"); n > 300 {
		t.Errorf("README.md has %d lines; keep it under 300 and move the rest to docs/", n)
	}
}

var linkPattern = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// links returns the link targets of a Markdown text outside code blocks.
func links(md string) []string {
	var out []string
	fence := false
	for l := range strings.SplitSeq(md, "\n") {
		if strings.HasPrefix(l, "```") {
			fence = !fence
		}
		if fence {
			continue
		}
		for _, m := range linkPattern.FindAllStringSubmatch(l, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// resolve checks one link of file from; anchors caches each file's headings.
func resolve(from, link string, anchors map[string]map[string]bool) error {
	if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
		return nil
	}
	path, frag, _ := strings.Cut(link, "#")
	target := from
	if path != "" {
		target = filepath.Join(filepath.Dir(from), path)
	}
	if _, err := os.Stat(target); err != nil {
		return fmt.Errorf("no such file %s", target)
	}
	if frag == "" || !strings.HasSuffix(target, ".md") {
		return nil
	}
	if anchors[target] == nil {
		body, err := os.ReadFile(target)
		if err != nil {
			return err
		}
		anchors[target] = headingAnchors(string(body))
	}
	if !anchors[target][frag] {
		return fmt.Errorf("%s has no heading #%s", target, frag)
	}
	return nil
}

// headingAnchors returns the anchors GitHub gives a Markdown text's
// headings: lower case, punctuation but "-" and "_" dropped, spaces as "-",
// a repeated one numbered.
func headingAnchors(md string) map[string]bool {
	out, seen := map[string]bool{}, map[string]int{}
	fence := false
	for l := range strings.SplitSeq(md, "\n") {
		if strings.HasPrefix(l, "```") {
			fence = !fence
		}
		title, ok := strings.CutPrefix(strings.TrimLeft(l, "#"), " ")
		if fence || !strings.HasPrefix(l, "#") || !ok {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(title)) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}
