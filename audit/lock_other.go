//go:build !unix

package audit

import "os"

// lock does nothing where flock does not exist: keep one file per process.
func lock(*os.File) error { return nil }
