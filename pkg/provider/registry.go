package provider

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// ParamType is the JSON type of a model parameter.
type ParamType string

// Parameter types.
const (
	String  ParamType = "string"
	Integer ParamType = "integer"
	Number  ParamType = "number"
	Boolean ParamType = "boolean"
	URI     ParamType = "uri"
)

// Param describes one model input a spec may set in a model's params.
type Param struct {
	Name        string    `json:"name"`
	Type        ParamType `json:"type"`
	Description string    `json:"description,omitempty"`
	// Enum, when non-empty, lists the allowed values (strings).
	Enum []string `json:"enum,omitempty"`
	// Min and Max bound numeric values when non-nil.
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
	// Default is the provider's default, for display.
	Default any `json:"default,omitempty"`
	// Required params must be set (prompt and reference are always supplied
	// by likeness and are not listed here).
	Required bool `json:"required,omitempty"`
	// Secret params are never stored, logged or traced.
	Secret bool `json:"secret,omitempty"`
}

// OutputKind is how a model returns its image.
type OutputKind string

// Output kinds.
const (
	OutputURI      OutputKind = "uri"
	OutputURIArray OutputKind = "uri_array"
	OutputBase64   OutputKind = "base64"
	OutputInline   OutputKind = "inline"
	OutputText     OutputKind = "text"
)

// Pricing is a model's list price per output image in USD. When ByParam is
// set, the value of that parameter selects the price from Table, and Base
// applies to values missing from the table.
type Pricing struct {
	Base    float64            `json:"base_usd"`
	ByParam string             `json:"by_param,omitempty"`
	Table   map[string]float64 `json:"table_usd,omitempty"`
}

// For returns the price for a request with the given params.
func (p Pricing) For(params map[string]any) float64 {
	if p.ByParam != "" {
		if v, ok := params[p.ByParam]; ok {
			if price, ok := p.Table[fmt.Sprint(v)]; ok {
				return price
			}
		}
	}
	return p.Base
}

// Limits are a model's default fleet-wide limits. Zero means unlimited.
type Limits struct {
	// Key groups models that share one provider limit (e.g. every model on a
	// Replicate account shares "replicate").
	Key string `json:"key"`
	// RequestsPerMinute caps request starts across the fleet.
	RequestsPerMinute int `json:"requests_per_minute,omitempty"`
	// Concurrency caps requests in flight across the fleet.
	Concurrency int `json:"concurrency,omitempty"`
}

// Model is one entry of the registry.
type Model struct {
	// Ref is "provider:name", the form specs use.
	Ref         string     `json:"ref"`
	Provider    string     `json:"provider"`
	Name        string     `json:"name"`
	Description string     `json:"description,omitempty"`
	Params      []Param    `json:"params"`
	Output      OutputKind `json:"output"`
	Pricing     Pricing    `json:"pricing"`
	// Latency is the typical wall time per image.
	Latency time.Duration `json:"latency_ns"`
	Limits  Limits        `json:"limits"`
	// Inpainting is true when the model accepts Request.Image and
	// Request.Mask: repaint the mask's white area of an image, with the
	// character reference. Specs ask for it per prompt (image and mask).
	Inpainting bool `json:"inpainting,omitempty"`
}

// Param returns the named parameter.
func (m Model) Param(name string) (Param, bool) {
	for _, p := range m.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// Registry is the set of models a spec may name. The zero value is empty;
// build one with NewRegistry.
type Registry struct {
	models map[string]Model
}

// NewRegistry returns a registry holding models. A later model with the same
// Ref replaces an earlier one.
func NewRegistry(models ...Model) *Registry {
	r := &Registry{models: make(map[string]Model, len(models))}
	for _, m := range models {
		r.models[m.Ref] = m
	}
	return r
}

// Lookup returns the model for a "provider:name" reference.
func (r *Registry) Lookup(ref string) (Model, bool) {
	m, ok := r.models[ref]
	return m, ok
}

// Models returns every model, sorted by Ref.
func (r *Registry) Models() []Model {
	out := make([]Model, 0, len(r.models))
	for _, m := range r.models {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out
}

// Providers returns the distinct provider names, sorted.
func (r *Registry) Providers() []string {
	var out []string
	for _, m := range r.models {
		if !slices.Contains(out, m.Provider) {
			out = append(out, m.Provider)
		}
	}
	sort.Strings(out)
	return out
}

// RefError reports a model reference the registry cannot resolve.
type RefError struct {
	Ref string
	// Known lists the refs of the same provider, or all providers, to help the
	// user spot a typo.
	Known []string
	// UnknownProvider is set when the provider part itself is unknown.
	UnknownProvider bool
}

func (e *RefError) Error() string {
	provider, _, _ := strings.Cut(e.Ref, ":")
	if e.UnknownProvider {
		return fmt.Sprintf("unknown provider %q (known: %s)", provider, strings.Join(e.Known, ", "))
	}
	return fmt.Sprintf("unknown model %q (known: %s)", e.Ref, strings.Join(e.Known, ", "))
}

// ParamError reports a bad parameter value; Param names the parameter so a
// spec parser can point at its line.
type ParamError struct {
	Param string
	Msg   string
}

func (e *ParamError) Error() string { return fmt.Sprintf("%s: %s", e.Param, e.Msg) }

// Resolve validates a model reference and its params. It returns *RefError
// for an unknown model and *ParamError for the first bad parameter (in
// parameter-name order, so messages are stable).
func (r *Registry) Resolve(ref string, params map[string]any) (Model, error) {
	m, ok := r.models[ref]
	if !ok {
		return Model{}, r.refError(ref)
	}
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p, ok := m.Param(name)
		if !ok {
			known := make([]string, 0, len(m.Params))
			for _, p := range m.Params {
				known = append(known, p.Name)
			}
			return m, &ParamError{Param: name, Msg: fmt.Sprintf("unknown parameter for %s (allowed: %s)", ref, strings.Join(known, ", "))}
		}
		if err := p.Check(params[name]); err != nil {
			return m, &ParamError{Param: name, Msg: err.Error()}
		}
	}
	for _, p := range m.Params {
		if _, ok := params[p.Name]; p.Required && !ok {
			return m, &ParamError{Param: p.Name, Msg: "required parameter is missing"}
		}
	}
	return m, nil
}

func (r *Registry) refError(ref string) *RefError {
	provider, _, ok := strings.Cut(ref, ":")
	e := &RefError{Ref: ref}
	if !ok || !slices.Contains(r.Providers(), provider) {
		e.UnknownProvider = true
		e.Known = r.Providers()
		return e
	}
	for _, m := range r.Models() {
		if m.Provider == provider {
			e.Known = append(e.Known, m.Ref)
		}
	}
	return e
}

// Check validates one value against the parameter's type, enum and range.
func (p Param) Check(v any) error {
	switch p.Type {
	case String, URI:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("want a string, got %v", describe(v))
		}
		if len(p.Enum) > 0 && !slices.Contains(p.Enum, s) {
			return fmt.Errorf("%q is not allowed (allowed: %s)", s, strings.Join(p.Enum, ", "))
		}
	case Boolean:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("want true or false, got %v", describe(v))
		}
	case Integer, Number:
		f, ok := toFloat(v)
		if !ok {
			return fmt.Errorf("want a number, got %v", describe(v))
		}
		if p.Type == Integer && f != math.Trunc(f) {
			return fmt.Errorf("want a whole number, got %v", v)
		}
		if p.Min != nil && f < *p.Min {
			return fmt.Errorf("%v is below the minimum %v", v, *p.Min)
		}
		if p.Max != nil && f > *p.Max {
			return fmt.Errorf("%v is above the maximum %v", v, *p.Max)
		}
	default:
		return fmt.Errorf("parameter type %q cannot be set from a spec", p.Type)
	}
	return nil
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	case uint64:
		return float64(n), true
	}
	return 0, false
}

func describe(v any) string {
	if v == nil {
		return "nothing"
	}
	return fmt.Sprintf("%v (%T)", v, v)
}

// Range returns a pointer to f, for Param.Min and Param.Max literals.
func Range(f float64) *float64 { return &f }
