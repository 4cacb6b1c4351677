// Package emulatortest starts the API emulator for other packages' tests,
// so that each does not set it up again. The emulator's own tests do not use
// it.
package emulatortest

import (
	"testing"

	"khproxy/emulator"
)

// New returns an emulator with one key of freshly generated credentials and
// every scope, and its rate limit off, after mutate has changed those
// options (say, to turn the rate limit on or to set faults). The emulator is
// closed when the test ends. It fails the test when the emulator cannot be
// built.
func New(t testing.TB, mutate ...func(*emulator.Options)) (emu *emulator.Emulator, key, secret string) {
	t.Helper()
	key, secret, err := emulator.NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	opts := emulator.Options{
		Keys:      []emulator.Key{{ID: key, Secret: secret, Scopes: emulator.AllScopes()}},
		RateLimit: emulator.RateLimit{Disabled: true},
	}
	for _, m := range mutate {
		m(&opts)
	}
	emu, err = emulator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	return emu, opts.Keys[0].ID, opts.Keys[0].Secret
}
