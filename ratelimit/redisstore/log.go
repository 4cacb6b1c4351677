package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SetLogger makes the Redis client write its own messages (a failed dial, a
// bad connection dropped from the pool) through log, at WARN, as the
// message key "detail" of a line "redis client", instead of plain text on
// the process's stderr, which would break a JSON log pipeline. The
// setting is process-wide, as go-redis's logger is; nil restores nothing
// and is ignored.
func SetLogger(log *slog.Logger) {
	if log != nil {
		redis.SetLogger(slogLogger{log})
	}
}

// slogLogger adapts a *slog.Logger to go-redis's logging interface.
type slogLogger struct{ log *slog.Logger }

// Printf logs one message of the Redis client.
func (l slogLogger) Printf(ctx context.Context, format string, v ...any) {
	// go-redis starts its messages with "redis: "; the line says so.
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	l.log.WarnContext(ctx, "redis client", "detail", msg)
}
