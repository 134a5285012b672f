package spec

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
)

// Task is one generation: a (character, prompt, model, variant) of a spec.
// It holds what the producer needs to build a task.Generate payload.
type Task struct {
	// ID is deterministic (see TaskID) and unique within the spec.
	ID        string
	Character string
	// Prompt is the prompt's id; PromptText its trimmed text.
	Prompt     string
	PromptText string
	// Model is the model's id in the spec; ModelRef its "provider:name".
	Model    string
	ModelRef string
	Provider string
	// Params is the task's own copy of the model's params.
	Params map[string]any
	// Variant counts from 0 to Variants-1.
	Variant int
	// Seed is DeriveSeed(spec seed, character, prompt, model, variant).
	Seed int64
}

// TaskCount is the number of tasks Expand returns.
func (s *Spec) TaskCount() int {
	return len(s.Characters) * len(s.Prompts) * len(s.Models) * s.Variants
}

// Expand returns one task per (character × prompt × model × variant), in
// spec order: characters outermost, then prompts, then models, then
// variants. The same spec always expands to the same ids and seeds.
func (s *Spec) Expand() []Task {
	tasks := make([]Task, 0, s.TaskCount())
	for _, c := range s.Characters {
		for _, p := range s.Prompts {
			for _, m := range s.Models {
				for v := range s.Variants {
					tasks = append(tasks, Task{
						ID:        TaskID(c.ID, p.ID, m.ID, v),
						Character: c.ID, Prompt: p.ID, PromptText: p.Text,
						Model: m.ID, ModelRef: m.Ref, Provider: m.Provider,
						Params:  cloneParams(m.Params),
						Variant: v,
						Seed:    DeriveSeed(s.Seed, c.ID, p.ID, m.ID, strconv.Itoa(v)),
					})
				}
			}
		}
	}
	return tasks
}

// TaskID is the id of a task: the first 16 hex characters of
// sha256("character\x00prompt\x00model\x00variant"), with variant in decimal.
// Ids are valid in object keys and stable across runs of the same spec.
func TaskID(character, prompt, model string, variant int) string {
	sum := sha256.Sum256([]byte(character + "\x00" + prompt + "\x00" + model + "\x00" + strconv.Itoa(variant)))
	return hex.EncodeToString(sum[:8])
}

// DeriveSeed derives a seed in [0, MaxSeed] from a base seed and any number
// of strings, from their sha256. It is deterministic, spreads nearby inputs
// uniformly, and never confuses ("ab", "c") with ("a", "bc").
func DeriveSeed(base int64, parts ...string) int64 {
	h := sha256.New()
	var buf [binary.MaxVarintLen64]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(base))
	h.Write(buf[:8])
	for _, part := range parts {
		n := binary.PutUvarint(buf[:], uint64(len(part)))
		h.Write(buf[:n])
		h.Write([]byte(part))
	}
	sum := h.Sum(nil)
	return int64(binary.BigEndian.Uint64(sum[:8]) & MaxSeed)
}

// RetrySeed is the seed for a retry of a task whose output was bad or
// moderated. Attempt 0 (and below) is the first try and returns taskSeed;
// each later attempt gets its own deterministic seed in [0, MaxSeed] that
// differs from taskSeed, so a redelivered retry asks for the same image.
func RetrySeed(taskSeed int64, attempt int) int64 {
	if attempt <= 0 {
		return taskSeed
	}
	s := DeriveSeed(taskSeed, "retry", strconv.Itoa(attempt))
	if s == taskSeed {
		s = (s + 1) & MaxSeed
	}
	return s
}

// cloneParams deep-copies params so tasks never share mutable state.
func cloneParams(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return cloneParams(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}
