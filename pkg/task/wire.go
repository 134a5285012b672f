package task

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// The wire format of a Generate payload. A run of 100,000 tasks keeps
// 100,000 payloads in Redis until workers take them, so the payload is
// written compactly: one- and two-letter keys, zero values left out, the
// enqueue time in Unix milliseconds. It is still JSON (readable with
// redis-cli and `asynq task inspect`), and a payload starts with `{"v":2`
// so a decoder tells it from the first format: the Generate struct's own
// JSON (long keys, RFC 3339 time), which payloads enqueued before the
// upgrade still carry and DecodeGenerate still reads.

// wireVersion is the compact format's "v".
const wireVersion = 2

// wireGenerate is Generate on the wire. Field order is the encoding's.
type wireGenerate struct {
	V             int            `json:"v"`
	RunID         string         `json:"r"`
	TaskID        string         `json:"t"`
	Character     string         `json:"c"`
	Prompt        string         `json:"p"`
	PromptText    string         `json:"x,omitempty"`
	Model         string         `json:"m"`
	ModelRef      string         `json:"mr"`
	Params        map[string]any `json:"pa,omitempty"`
	Variant       int            `json:"va,omitempty"`
	Seed          int64          `json:"s,omitempty"`
	RefKey        string         `json:"rk,omitempty"`
	EditImageKey  string         `json:"ei,omitempty"`
	EditMaskKey   string         `json:"em,omitempty"`
	OutputRetries int            `json:"or,omitempty"`
	Tags          int            `json:"tg,omitempty"`
	MaxAttempts   int            `json:"ma,omitempty"`
	// EnqueuedAtMS is Generate.EnqueuedAt in Unix milliseconds; 0 for a
	// zero time.
	EnqueuedAtMS int64 `json:"e,omitempty"`
}

// EncodeGenerate returns g's payload in the compact wire format.
// DecodeGenerate reads it back to an equal Generate, except that
// EnqueuedAt keeps millisecond precision and comes back in UTC.
func EncodeGenerate(g Generate) ([]byte, error) {
	w := wireGenerate{
		V: wireVersion, RunID: g.RunID, TaskID: g.TaskID, Character: g.Character, Prompt: g.Prompt,
		PromptText: g.PromptText, Model: g.Model, ModelRef: g.ModelRef, Params: g.Params, Variant: g.Variant,
		Seed: g.Seed, RefKey: g.RefKey, EditImageKey: g.EditImageKey, EditMaskKey: g.EditMaskKey,
		OutputRetries: g.OutputRetries, Tags: g.Tags, MaxAttempts: g.MaxAttempts,
	}
	if !g.EnqueuedAt.IsZero() {
		w.EnqueuedAtMS = g.EnqueuedAt.UnixMilli()
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // prompt text keeps its <, > and & as one byte each
	if err := enc.Encode(w); err != nil {
		return nil, fmt.Errorf("encode task %s: %w", g.TaskID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// wirePrefix starts every compact payload (EncodeGenerate writes "v" first).
var wirePrefix = []byte(`{"v":`)

// decodeWire decodes a compact payload into g; ok is false when data is
// not one (a payload in the first format).
func decodeWire(data []byte, g *Generate) (ok bool, err error) {
	if !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), wirePrefix) {
		return false, nil
	}
	var w wireGenerate
	if err := json.Unmarshal(data, &w); err != nil {
		return true, err
	}
	if w.V != wireVersion {
		return true, fmt.Errorf("payload format %d is newer than this worker reads (%d): upgrade the worker", w.V, wireVersion)
	}
	*g = Generate{
		RunID: w.RunID, TaskID: w.TaskID, Character: w.Character, Prompt: w.Prompt, PromptText: w.PromptText,
		Model: w.Model, ModelRef: w.ModelRef, Params: w.Params, Variant: w.Variant, Seed: w.Seed,
		RefKey: w.RefKey, EditImageKey: w.EditImageKey, EditMaskKey: w.EditMaskKey,
		OutputRetries: w.OutputRetries, Tags: w.Tags, MaxAttempts: w.MaxAttempts,
	}
	if w.EnqueuedAtMS != 0 {
		g.EnqueuedAt = time.UnixMilli(w.EnqueuedAtMS).UTC()
	}
	return true, nil
}
