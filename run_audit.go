package main

import (
	"fmt"
	"io"
	"os"

	"khproxy/audit"
)

// auditCmd runs `khproxy audit verify FILE...`: it checks each file's hash
// chain and prints the totals, or fails naming the first line that does not
// verify.
func auditCmd(args []string, stdout io.Writer) error {
	if len(args) < 2 || args[0] != "verify" {
		return fmt.Errorf("%w: khproxy audit verify FILE... (the files of KH_AUDIT_LOG, one per replica)", errUsage)
	}
	var s audit.Summary
	for _, name := range args[1:] {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = s.Verify(name, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("audit log does not verify: %w", err)
		}
		fmt.Fprintf(stdout, "%s: verified; last hash %s\n", name, s.LastHash[len(s.LastHash)-1])
	}
	fmt.Fprint(stdout, s.String())
	return nil
}
