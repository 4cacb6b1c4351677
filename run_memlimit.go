package main

import (
	"io/fs"
	"log/slog"

	"khproxy/internal/memlimit"
)

// applyMemLimit sets the runtime's soft memory limit to 90% of the
// container's cgroup memory limit, read under root ("/" in production),
// unless GOMEMLIMIT (in environ) sets one, and logs what it did.
func applyMemLimit(root fs.FS, environ []string, log *slog.Logger) {
	env := lookup(environ, "GOMEMLIMIT")
	r, err := memlimit.Apply(root, env)
	switch {
	case err != nil:
		log.Warn("cannot read the cgroup memory limit: no soft memory limit set; set GOMEMLIMIT", "error", err)
	case r.FromEnv:
		log.Info("soft memory limit from GOMEMLIMIT", "gomemlimit", env)
	case r.Set > 0:
		log.Info("soft memory limit set to 90% of the cgroup memory limit", "gomemlimit_bytes", r.Set, "cgroup_limit_bytes", r.Cgroup)
	}
}
