package main

import (
	"log/slog"
	"syscall"

	"khproxy/internal/httpserve"
)

// fdReserve is how many file descriptors khproxy keeps for itself beyond its
// client connections: upstream connections, the secret file, the runtime.
const fdReserve = 128

// warnOpenFileLimit warns when KH_MAX_CONNS, on each of listeners, with
// others (the connections of listeners with bounds of their own, as the
// admin listener's), does not leave fdReserve file descriptors under the
// process's open-file limit: slow clients could then take the descriptors
// that good requests need to reach the API.
func warnOpenFileLimit(log *slog.Logger, maxConns, listeners, others int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	need := func(n int) uint64 { return uint64(listeners*httpserve.OpenConns(n) + others + fdReserve) }
	if lim.Cur >= need(maxConns) {
		return
	}
	fits := maxConns
	for fits > 1 && need(fits) > lim.Cur {
		fits--
	}
	log.Warn("KH_MAX_CONNS leaves too few file descriptors under the open-file limit for upstream connections: lower it or raise the limit (ulimit -n)",
		"var", "KH_MAX_CONNS", "max_conns", maxConns, "open_file_limit", lim.Cur, "needed", need(maxConns), "fitting_max_conns", fits)
}
