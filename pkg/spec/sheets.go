package spec

import (
	"go.yaml.in/yaml/v3"
)

// SheetVariants says which variants a character sheet shows.
type SheetVariants string

// Sheet variant choices.
const (
	// SheetFirstVariant shows variant 0 of each (prompt, model): one column
	// per model. The default.
	SheetFirstVariant SheetVariants = "first"
	// SheetAllVariants shows every variant: one column per (model, variant).
	SheetAllVariants SheetVariants = "all"
)

// Sheets configures the character sheets the fan-in draws, one PNG per
// character (the reference, then a grid of prompts by models). The zero
// value is the default: variant 0 only.
type Sheets struct {
	// Variants is SheetFirstVariant (also when empty) or SheetAllVariants.
	Variants SheetVariants
}

// All reports whether the sheets show every variant.
func (s Sheets) All() bool { return s.Variants == SheetAllVariants }

var sheetsFields = []string{"variants"}

// sheets decodes the optional sheets: block.
func (p *parser) sheets(top map[string]entry, s *Spec) {
	e, ok := top["sheets"]
	if !ok || isNull(e.val) {
		return
	}
	m, ok := p.object(e.val, "sheets", sheetsFields)
	if !ok {
		return
	}
	v, ok := m["variants"]
	if !ok || isNull(v.val) {
		return
	}
	n := deref(v.val)
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == tagStr && (n.Value == string(SheetFirstVariant) || n.Value == string(SheetAllVariants)):
		s.Sheets.Variants = SheetVariants(n.Value)
	default:
		p.errorf(n.Line, "sheets.variants", "must be %q (variant 0 of each prompt and model, the default) or %q (every variant), got %s",
			SheetFirstVariant, SheetAllVariants, describe(n))
	}
}

// ParseSheets reads only the sheets: block of a spec, for the fan-in, which
// has the spec as submitted (runs/<run>/spec.yaml) but not its references.
// The spec was validated in full when it was submitted; a problem is still
// reported as Errors with file and line. A spec without the block gives the
// zero Sheets.
func ParseSheets(file string, data []byte) (Sheets, error) {
	p := &parser{file: file}
	var s Spec
	if root := p.document(data); root != nil {
		if top, ok := p.mapping(root, "", nil); ok {
			idx := make(map[string]entry, len(top))
			for _, e := range top {
				idx[e.name] = e
			}
			p.sheets(idx, &s)
		}
	}
	if len(p.errs) > 0 {
		p.errs.sortByLine()
		return Sheets{}, p.errs
	}
	return s.Sheets, nil
}

// digest is the sheets setting as it enters Spec.Digest: empty for
// the default, so specs without the block keep their run ids.
func (s Sheets) digest() string {
	if s.All() {
		return string(SheetAllVariants)
	}
	return ""
}
