package testutil

import "fmt"

// SizeName names a body size for sub-benchmarks and subtests: "1KiB",
// "64KiB", "1MiB" for whole KiB or MiB, else bytes ("0B", "300B").
func SizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
