package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// LogHandler wraps h so that every record logged with a context holding a
// span (the slog ...Context methods) carries trace_id and span_id, at the
// top level even under WithGroup. Records without a span pass unchanged.
func LogHandler(h slog.Handler) slog.Handler {
	return &logHandler{inner: h, beforeGroups: h}
}

type logHandler struct {
	// inner is the wrapped handler with every WithAttrs and WithGroup applied.
	inner slog.Handler
	// beforeGroups is the wrapped handler as it was before the first
	// WithGroup, and ops what was applied since: the ids are added there,
	// outside the groups, and the rest replayed.
	beforeGroups slog.Handler
	ops          []logOp
}

type logOp struct {
	group string
	attrs []slog.Attr
}

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return h.inner.Handle(ctx, r)
	}
	ids := []slog.Attr{slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String())}
	if len(h.ops) == 0 {
		r = r.Clone()
		r.AddAttrs(ids...)
		return h.inner.Handle(ctx, r)
	}
	inner := h.beforeGroups.WithAttrs(ids)
	for _, op := range h.ops {
		if op.group != "" {
			inner = inner.WithGroup(op.group)
		} else {
			inner = inner.WithAttrs(op.attrs)
		}
	}
	return inner.Handle(ctx, r)
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	n := &logHandler{inner: h.inner.WithAttrs(attrs), beforeGroups: h.beforeGroups, ops: h.ops}
	if len(h.ops) == 0 {
		n.beforeGroups = n.inner
	} else {
		n.ops = append(h.ops[:len(h.ops):len(h.ops)], logOp{attrs: attrs})
	}
	return n
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &logHandler{
		inner:        h.inner.WithGroup(name),
		beforeGroups: h.beforeGroups,
		ops:          append(h.ops[:len(h.ops):len(h.ops)], logOp{group: name}),
	}
}
