package signer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// FileSecret is a SecretSource that reads the secret from a file and reads it
// again when the file changes, so that a rotated Kubernetes secret (mounted as
// a file and swapped atomically) is picked up without a restart. The file holds
// the secret alone; one trailing newline ("\n" or "\r\n") is ignored.
//
// Changes are looked for at most once per DefaultCheckEvery. When the file
// cannot be read or holds an invalid secret after a change, the last good
// secret stays in use and Err reports why. Create it with NewFileSecret; it is
// safe for concurrent use.
type FileSecret struct {
	// OnChange, when set (before the first call to Secret), is called with
	// nil after a new secret was loaded, and with the error when the file
	// became unusable; once per change, never with the secret itself.
	OnChange func(err error)

	path       string
	checkEvery time.Duration

	mu      sync.Mutex
	secret  []byte
	gen     uint64 // counts the secrets loaded: 1 after NewFileSecret
	stat    os.FileInfo
	checked time.Time
	err     error
}

// DefaultCheckEvery is how often a FileSecret looks for a changed file.
const DefaultCheckEvery = time.Second

// NewFileSecret reads the secret at path. It fails when the file cannot be
// read or its content is not a valid secret (see ValidateSecret).
func NewFileSecret(path string) (*FileSecret, error) {
	f := &FileSecret{path: path, checkEvery: DefaultCheckEvery}
	if err := f.reload(time.Now()); err != nil {
		return nil, err
	}
	return f, nil
}

// Secret returns the current secret, reading the file again if it changed.
func (f *FileSecret) Secret() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if now.Sub(f.checked) < f.checkEvery {
		return f.secret, nil
	}
	before := f.stat
	err := f.reload(now)
	if f.OnChange != nil {
		switch {
		case err != nil && (f.err == nil || f.err.Error() != err.Error()):
			f.OnChange(err)
		case err == nil && f.stat != before:
			f.OnChange(nil)
		}
	}
	f.err = err
	return f.secret, nil
}

// Err returns the error of the last failed reload, or nil when the file was
// last read successfully.
func (f *FileSecret) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// reload reads the file when its identity, size or mtime changed. f.mu must be
// held (or f not yet shared).
func (f *FileSecret) reload(now time.Time) error {
	f.checked = now
	st, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("signer: secret file: %w", err)
	}
	if f.stat != nil && os.SameFile(f.stat, st) && st.ModTime().Equal(f.stat.ModTime()) && st.Size() == f.stat.Size() {
		return nil
	}
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("signer: secret file: %w", err)
	}
	secret := TrimSecretFile(raw)
	if err := ValidateSecret(secret); err != nil {
		return fmt.Errorf("signer: secret file %s: %w", f.path, err)
	}
	if !bytes.Equal(secret, f.secret) {
		f.gen++
	}
	f.secret, f.stat = secret, st
	return nil
}

// Generation counts the distinct secrets loaded so far: 1 after
// NewFileSecret, one more each time the file's content changed to another
// valid secret. A signature made after Generation returned g used
// generation g or a later one.
func (f *FileSecret) Generation() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen
}

// Reread reads the file at once, whenever it was last looked at and
// whatever its size and times say (a file rewritten in place within the
// clock's granularity looks unchanged), for a caller whose signature the
// API has just rejected. It returns the generation in use afterwards, and
// the error when the file is unusable (the last good secret then stays in
// use). OnChange is told as Secret would tell it.
func (f *FileSecret) Reread() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before := f.gen
	f.stat = nil // read the content, not just the file's metadata
	err := f.reload(time.Now())
	if f.OnChange != nil {
		switch {
		case err != nil && (f.err == nil || f.err.Error() != err.Error()):
			f.OnChange(err)
		case err == nil && f.gen != before:
			f.OnChange(nil)
		}
	}
	f.err = err
	return f.gen, err
}

// TrimSecretFile removes one trailing "\n" or "\r\n" from a secret file's
// content, as left by `echo secret > file` and most editors.
func TrimSecretFile(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// ValidateSecret reports whether b can be used as a secret: non-empty, valid
// UTF-8, and free of white space and control characters (which in practice
// are copy-paste accidents). The error never contains the secret.
func ValidateSecret(b []byte) error {
	if len(b) == 0 {
		return errors.New("secret is empty")
	}
	if !utf8.Valid(b) {
		return errors.New("secret is not valid UTF-8")
	}
	for i, r := range string(b) {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("secret has white space or a control character at byte %d", i)
		}
	}
	return nil
}
