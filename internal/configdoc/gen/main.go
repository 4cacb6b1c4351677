// Command gen writes the configuration reference to the file its one
// argument names; go generate runs it (see package configdoc).
package main

import (
	"fmt"
	"os"

	"khproxy/config"
	"khproxy/internal/configdoc"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen FILE")
		os.Exit(2)
	}
	if err := os.WriteFile(os.Args[1], configdoc.Render(config.Vars(), config.DemoVars()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
