package config

// ReferenceEntries returns how many variables have a reference entry, for
// the test that no entry outlives its variable.
func ReferenceEntries() int { return len(reference) }
