package worker

import (
	"context"
	"fmt"
	"log/slog"
)

// queueLogger routes asynq's own logs through slog, so a worker's output is
// one structured stream.
type queueLogger struct{ l *slog.Logger }

func newQueueLogger(l *slog.Logger) queueLogger { return queueLogger{l.With("component", "asynq")} }

func (q queueLogger) log(level slog.Level, args ...any) {
	q.l.Log(context.Background(), level, fmt.Sprint(args...))
}

func (q queueLogger) Debug(args ...any) { q.log(slog.LevelDebug, args...) }
func (q queueLogger) Info(args ...any)  { q.log(slog.LevelInfo, args...) }
func (q queueLogger) Warn(args ...any)  { q.log(slog.LevelWarn, args...) }
func (q queueLogger) Error(args ...any) { q.log(slog.LevelError, args...) }

// Fatal is called by asynq for unrecoverable setup errors; it logs them and
// leaves process exit to the caller.
func (q queueLogger) Fatal(args ...any) { q.log(slog.LevelError+4, args...) }
