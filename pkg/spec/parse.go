package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/likeness-run/likeness/pkg/provider"
)

// YAML core tags, as reported by yaml.Node.ShortTag.
const (
	tagStr       = "!!str"
	tagInt       = "!!int"
	tagFloat     = "!!float"
	tagBool      = "!!bool"
	tagNull      = "!!null"
	tagTimestamp = "!!timestamp"
	tagMerge     = "!!merge"
)

// maxDepth bounds the nesting of model params (and stops alias cycles).
const maxDepth = 16

var (
	topFields       = []string{"version", "name", "characters", "prompts", "models", "variants", "seed", "budget_usd", "output_retries", "max_attempts", "infra_retry_for", "tags", "sheets"}
	characterFields = []string{"id", "reference"}
	promptFields    = []string{"id", "text", "image", "mask"}
	modelFields     = []string{"id", "model", "params"}
	tagsFields      = []string{"number_of_tags"}

	modelRefPattern = regexp.MustCompile(`^[a-z0-9-]+:.+$`)
	yamlLinePrefix  = regexp.MustCompile(`^yaml: line (\d+): `)
)

// parser collects every problem of one spec.
type parser struct {
	file   string
	refs   fs.FS  // where local references are read; nil allows only URLs
	dir    string // the spec's directory inside refs
	models Models
	errs   Errors
	loaded map[string]Reference // references already read, by name in refs
	// editLines and modelLines are the lines of prompts' image fields and
	// of models' model fields, by index in Spec.Prompts and Spec.Models,
	// for the check that every model can inpaint when a prompt asks for it.
	editLines, modelLines map[int]int
}

// entry is one key/value pair of a mapping.
type entry struct {
	name     string
	key, val *yaml.Node
}

func parse(file string, data []byte, refs fs.FS, dir string, models Models) (*Spec, error) {
	if models == nil {
		models = provider.DefaultRegistry()
	}
	p := &parser{file: file, refs: refs, dir: dir, models: models, loaded: map[string]Reference{},
		editLines: map[int]int{}, modelLines: map[int]int{}}
	s := &Spec{
		File: file, Raw: data,
		Variants: DefaultVariants, OutputRetries: DefaultOutputRetries, MaxAttempts: DefaultMaxAttempts,
		InfraRetryFor: DefaultInfraRetryFor,
	}
	if root := p.document(data); root != nil {
		p.spec(root, s)
	}
	if len(p.errs) > 0 {
		p.errs.sortByLine()
		return nil, p.errs
	}
	return s, nil
}

func (p *parser) errorf(line int, path, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// document parses data as exactly one YAML document and returns its root.
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(0, "", "the spec is empty")
		} else {
			p.syntax(err)
		}
		return nil
	}
	if len(doc.Content) == 0 {
		p.errorf(0, "", "the spec is empty")
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.syntax(err)
		return nil
	default:
		p.errorf(next.Line, "", "a spec is one YAML document; remove the second one (after ---)")
		return nil
	}
	return doc.Content[0]
}

// syntax reports a YAML parser error at the line it names.
func (p *parser) syntax(err error) {
	msg := err.Error()
	line := 0
	if m := yamlLinePrefix.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	p.errorf(line, "", "invalid YAML: %s", msg)
}

func (p *parser) spec(root *yaml.Node, s *Spec) {
	top, ok := p.object(root, "", topFields)
	if !ok {
		return
	}
	if e, ok := p.required(top, root, "", "version"); ok {
		if v, ok := p.integer(e.val, "version", math.MinInt64, math.MaxInt64); ok {
			if v != Version {
				p.errorf(e.val.Line, "version", "unsupported version %d; this likeness reads version %d", v, Version)
			}
			s.Version = int(v)
		}
	}
	if e, ok := p.required(top, root, "", "name"); ok {
		s.Name, _ = p.id(e.val, "name")
	}
	p.characters(top, root, s)
	p.prompts(top, root, s)
	p.modelList(top, root, s)
	p.inpainting(s)
	if e, ok := top["variants"]; ok && !isNull(e.val) {
		if v, ok := p.integer(e.val, "variants", 1, MaxVariants); ok {
			s.Variants = int(v)
		}
	}
	if e, ok := top["seed"]; ok && !isNull(e.val) {
		if v, ok := p.integer(e.val, "seed", 0, MaxSeed); ok {
			s.Seed = v
		}
	}
	if e, ok := top["budget_usd"]; ok && !isNull(e.val) {
		s.BudgetUSD = p.budget(e.val)
	}
	if e, ok := top["output_retries"]; ok && !isNull(e.val) {
		if v, ok := p.integer(e.val, "output_retries", 0, MaxOutputRetries); ok {
			s.OutputRetries = int(v)
		}
	}
	if e, ok := top["max_attempts"]; ok && !isNull(e.val) {
		if v, ok := p.integer(e.val, "max_attempts", 1, MaxMaxAttempts); ok {
			s.MaxAttempts = int(v)
		}
	}
	if e, ok := top["infra_retry_for"]; ok && !isNull(e.val) {
		if v, ok := p.str(e.val, "infra_retry_for"); ok {
			d, err := time.ParseDuration(v)
			switch {
			case err != nil:
				p.errorf(deref(e.val).Line, "infra_retry_for", "must be a duration such as \"6h\" or \"90m\", got %q", v)
			case d < MinInfraRetryFor || d > MaxInfraRetryFor:
				p.errorf(deref(e.val).Line, "infra_retry_for", "must be between %s and %s, got %s", MinInfraRetryFor, MaxInfraRetryFor, v)
			default:
				s.InfraRetryFor = d
			}
		}
	}
	if e, ok := top["tags"]; ok && !isNull(e.val) {
		if tags, ok := p.object(e.val, "tags", tagsFields); ok {
			if e, ok := tags["number_of_tags"]; ok && !isNull(e.val) {
				if v, ok := p.integer(e.val, "tags.number_of_tags", 0, MaxTags); ok {
					s.Tags.NumberOfTags = int(v)
				}
			}
		}
	}
	p.sheets(top, s)
}

func (p *parser) characters(top map[string]entry, root *yaml.Node, s *Spec) {
	items := p.list(top, root, "characters", "character")
	seen := map[string]int{}
	for i, item := range items {
		path := fmt.Sprintf("characters[%d]", i)
		m, ok := p.object(item, path, characterFields)
		if !ok {
			continue
		}
		var c Character
		if e, ok := p.required(m, item, path, "id"); ok {
			c.ID, _ = p.uniqueID(e.val, path+".id", seen)
		}
		if e, ok := p.required(m, item, path, "reference"); ok {
			if src, ok := p.str(e.val, path+".reference"); ok {
				c.Reference, _ = p.reference(e.val.Line, path+".reference", src)
			}
		}
		s.Characters = append(s.Characters, c)
	}
}

func (p *parser) prompts(top map[string]entry, root *yaml.Node, s *Spec) {
	items := p.list(top, root, "prompts", "prompt")
	seen := map[string]int{}
	for i, item := range items {
		path := fmt.Sprintf("prompts[%d]", i)
		m, ok := p.object(item, path, promptFields)
		if !ok {
			continue
		}
		var pr Prompt
		if e, ok := p.required(m, item, path, "id"); ok {
			pr.ID, _ = p.uniqueID(e.val, path+".id", seen)
		}
		if e, ok := p.required(m, item, path, "text"); ok {
			if text, ok := p.str(e.val, path+".text"); ok {
				text = strings.TrimSpace(text)
				switch n := utf8.RuneCountInString(text); {
				case n == 0:
					p.errorf(e.val.Line, path+".text", "must not be empty")
				case n > MaxPromptLen:
					p.errorf(e.val.Line, path+".text", "is %d characters long; the maximum is %d", n, MaxPromptLen)
				}
				pr.Text = text
			}
		}
		if pr.Edit = p.edit(m, path); pr.Edit != nil {
			p.editLines[len(s.Prompts)] = m["image"].key.Line
		}
		s.Prompts = append(s.Prompts, pr)
	}
}

// inpainting refuses a model that cannot repaint an image in a spec whose
// prompts ask for it: every prompt runs on every model.
func (p *parser) inpainting(s *Spec) {
	first := -1
	for i, pr := range s.Prompts {
		if pr.Edit != nil {
			first = i
			break
		}
	}
	if first < 0 {
		return
	}
	for i, m := range s.Models {
		line, ok := p.modelLines[i]
		if !ok || m.Info.Ref == "" || m.Info.Inpainting {
			continue
		}
		p.errorf(line, fmt.Sprintf("models[%d].model", i),
			"%s cannot inpaint, and prompts[%d] (line %d) gives an image and mask to repaint; every prompt runs on every model, so use models that can (the INPAINT column of `likeness models`) or put the edit prompts in a spec of their own",
			m.Ref, first, p.editLines[first])
	}
}

// edit reads a prompt's image and mask: both or neither, each a reference
// like a character's, and the mask the image's size.
func (p *parser) edit(m map[string]entry, path string) *Edit {
	img, hasImage := m["image"]
	mask, hasMask := m["mask"]
	hasImage = hasImage && !isNull(img.val)
	hasMask = hasMask && !isNull(mask.val)
	switch {
	case !hasImage && !hasMask:
		return nil
	case !hasMask:
		p.errorf(img.key.Line, path+".image", "needs a mask beside it (mask: a PNG of the image's size, white where the character is painted in, black where the image is kept)")
	case !hasImage:
		p.errorf(mask.key.Line, path+".mask", "needs the image it masks beside it (image: the picture to repaint)")
	}
	if !hasImage || !hasMask {
		return nil
	}
	var ed Edit
	src, ok1 := p.str(img.val, path+".image")
	if ok1 {
		ed.Image, ok1 = p.reference(img.val.Line, path+".image", src)
	}
	src, ok2 := p.str(mask.val, path+".mask")
	if ok2 {
		ed.Mask, ok2 = p.reference(mask.val.Line, path+".mask", src)
	}
	if !ok1 || !ok2 {
		return nil
	}
	if !ed.Image.Remote && !ed.Mask.Remote && (ed.Image.Width != ed.Mask.Width || ed.Image.Height != ed.Mask.Height) {
		p.errorf(mask.val.Line, path+".mask", "is %dx%d but the image is %dx%d; the mask must be the image's size",
			ed.Mask.Width, ed.Mask.Height, ed.Image.Width, ed.Image.Height)
		return nil
	}
	return &ed
}

func (p *parser) modelList(top map[string]entry, root *yaml.Node, s *Spec) {
	items := p.list(top, root, "models", "model")
	seen := map[string]int{}
	for i, item := range items {
		path := fmt.Sprintf("models[%d]", i)
		m, ok := p.object(item, path, modelFields)
		if !ok {
			continue
		}
		md := Model{Params: map[string]any{}}
		if e, ok := p.required(m, item, path, "id"); ok {
			md.ID, _ = p.uniqueID(e.val, path+".id", seen)
		}
		keyLines := map[string]int{}
		var undecoded map[string]bool
		params, hasParams := m["params"]
		if hasParams && !isNull(params.val) {
			md.Params, keyLines, undecoded = p.params(params.val, path+".params")
		}
		e, ok := p.required(m, item, path, "model")
		if !ok {
			s.Models = append(s.Models, md)
			continue
		}
		ref, ok := p.str(e.val, path+".model")
		if !ok {
			s.Models = append(s.Models, md)
			continue
		}
		md.Ref = ref
		md.Provider, _, _ = strings.Cut(ref, ":")
		if !modelRefPattern.MatchString(ref) {
			p.errorf(e.val.Line, path+".model", "%q must be \"provider:name\", e.g. sim:kontext (see `likeness models`)", ref)
			s.Models = append(s.Models, md)
			continue
		}
		missingLine := e.key.Line
		if hasParams {
			missingLine = params.key.Line
		}
		md.Info = p.resolve(ref, md.Params, undecoded, path, e.val.Line, missingLine, keyLines)
		p.modelLines[len(s.Models)] = e.val.Line
		s.Models = append(s.Models, md)
	}
}

// resolve checks a model reference and its params against the registry,
// reporting every bad parameter at its own line. Secret parameters are
// refused before the registry sees them, so their values never reach a
// message. Params that could not be decoded (undecoded, already reported)
// count as set.
func (p *parser) resolve(ref string, params map[string]any, undecoded map[string]bool, path string, refLine, missingLine int, keyLines map[string]int) provider.Model {
	info, err := p.models.Resolve(ref, nil)
	var pe *provider.ParamError
	if err != nil && !errors.As(err, &pe) {
		// *provider.RefError, or whatever else the Models implementation
		// says about the reference itself.
		p.errorf(refLine, path+".model", "%s", err.Error())
		return info
	}
	if info.Output == provider.OutputText {
		p.errorf(refLine, path+".model", "%s is a text model, not an image model (topic tags are set with the tags: block)", ref)
		return info
	}
	rest := make(map[string]any, len(params))
	secret := map[string]bool{}
	for _, name := range sortedKeys(params) {
		if prm, ok := info.Param(name); ok && prm.Secret {
			p.errorf(keyLines[name], path+".params."+name, "is a secret and must not be written in a spec; set it in the environment instead")
			secret[name] = true
			continue
		}
		rest[name] = params[name]
	}
	// The registry reports the first bad parameter; drop it and ask again so
	// the user sees every bad parameter at once. Each round drops one, so
	// this ends.
	for range len(params) + 1 {
		_, err := p.models.Resolve(ref, rest)
		if err == nil {
			break
		}
		if !errors.As(err, &pe) {
			p.errorf(refLine, path+".model", "%s", err.Error())
			break
		}
		if _, ok := rest[pe.Param]; !ok {
			p.missing(info, params, undecoded, pe, secret, path, missingLine)
			break
		}
		p.errorf(keyLines[pe.Param], path+".params."+pe.Param, "%s", pe.Msg)
		delete(rest, pe.Param)
	}
	return info
}

// missing reports required parameters the spec leaves out. The registry
// names only the first, and a secret one (which the worker reads from its
// environment) must not be asked for, so the rest come from the model's
// parameter list.
func (p *parser) missing(info provider.Model, params map[string]any, undecoded map[string]bool, pe *provider.ParamError, secret map[string]bool, path string, line int) {
	first, _ := info.Param(pe.Param)
	reported := map[string]bool{}
	if !secret[pe.Param] && !first.Secret && !undecoded[pe.Param] {
		p.errorf(line, path+".params."+pe.Param, "%s", pe.Msg)
		reported[pe.Param] = true
	}
	for _, prm := range info.Params {
		if _, set := params[prm.Name]; prm.Required && !prm.Secret && !set && !undecoded[prm.Name] && !reported[prm.Name] {
			p.errorf(line, path+".params."+prm.Name, "required parameter is missing")
		}
	}
}

// params decodes a model's params into JSON-able values, remembers the line
// of each top-level key, and returns the names whose values could not be
// decoded (already reported).
func (p *parser) params(n *yaml.Node, path string) (map[string]any, map[string]int, map[string]bool) {
	m, ok := p.mapping(n, path, nil)
	if !ok {
		return map[string]any{}, nil, nil
	}
	out := make(map[string]any, len(m))
	lines := make(map[string]int, len(m))
	undecoded := map[string]bool{}
	for _, e := range m {
		lines[e.name] = e.key.Line
		if v, ok := p.value(e.val, path+"."+e.name, 1); ok {
			out[e.name] = v
		} else {
			undecoded[e.name] = true
		}
	}
	return out, lines, undecoded
}

// value decodes a param value: integers to int, other numbers to float64,
// and strings, booleans, null, lists and mappings to their JSON equivalents.
func (p *parser) value(n *yaml.Node, path string, depth int) (any, bool) {
	n = deref(n)
	if depth > maxDepth {
		p.errorf(n.Line, path, "is nested more than %d levels deep", maxDepth)
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		m, ok := p.mapping(n, path, nil)
		if !ok {
			return nil, false
		}
		out := make(map[string]any, len(m))
		for _, e := range m {
			v, vok := p.value(e.val, path+"."+e.name, depth+1)
			ok = ok && vok
			out[e.name] = v
		}
		return out, ok
	case yaml.SequenceNode:
		out := make([]any, len(n.Content))
		ok := true
		for i, c := range n.Content {
			v, vok := p.value(c, fmt.Sprintf("%s[%d]", path, i), depth+1)
			ok = ok && vok
			out[i] = v
		}
		return out, ok
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case tagStr, tagTimestamp:
			return n.Value, true
		case tagNull:
			return nil, true
		case tagBool:
			var b bool
			if err := n.Decode(&b); err != nil {
				p.errorf(n.Line, path, "is not a valid boolean: %s", n.Value)
				return nil, false
			}
			return b, true
		case tagInt:
			var i int
			if err := n.Decode(&i); err != nil {
				p.errorf(n.Line, path, "integer %s is out of range", n.Value)
				return nil, false
			}
			return i, true
		case tagFloat:
			var f float64
			if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				p.errorf(n.Line, path, "must be a finite number, got %s", n.Value)
				return nil, false
			}
			return f, true
		default:
			p.errorf(n.Line, path, "has YAML tag %s; use a string, number, boolean, list or mapping", tag)
			return nil, false
		}
	}
	p.errorf(n.Line, path, "is not a value")
	return nil, false
}

// list returns the items of a required, non-empty list field.
func (p *parser) list(top map[string]entry, root *yaml.Node, field, noun string) []*yaml.Node {
	e, ok := top[field]
	if !ok {
		p.errorf(root.Line, field, "required: add at least one %s", noun)
		return nil
	}
	n := deref(e.val)
	if isNull(n) || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		p.errorf(e.key.Line, field, "at least one %s is required", noun)
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, field, "must be a list (items start with \"- \"), got %s", describe(n))
		return nil
	}
	return n.Content
}

// mapping returns the pairs of a mapping node in document order, or false if
// n is not a mapping. With known set, keys outside it are reported and
// dropped; duplicate keys are always reported and dropped. The remaining
// pairs are still returned so one pass reports every problem.
func (p *parser) mapping(n *yaml.Node, path string, known []string) ([]entry, bool) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		if path == "" {
			p.errorf(n.Line, "", "a spec must be a YAML mapping with version, name, characters, prompts and models")
		} else {
			p.errorf(n.Line, path, "must be a mapping (key: value), got %s", describe(n))
		}
		return nil, false
	}
	out := make([]entry, 0, len(n.Content)/2)
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		name := k.Value
		field := join(path, name)
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k.Line, path, "keys must be plain names, got %s", describe(k))
			continue
		case k.ShortTag() == tagMerge:
			p.errorf(k.Line, path, "merge keys (<<) are not supported; write the fields out")
			continue
		case known != nil && !slices.Contains(known, name):
			p.errorf(k.Line, field, "unknown field (allowed: %s)", strings.Join(known, ", "))
			continue
		}
		if line, dup := first[name]; dup {
			p.errorf(k.Line, field, "duplicate key (first at line %d)", line)
			continue
		}
		first[name] = k.Line
		out = append(out, entry{name: name, key: k, val: v})
	}
	return out, true
}

// object is mapping for a mapping with fixed fields, indexed by name.
func (p *parser) object(n *yaml.Node, path string, known []string) (map[string]entry, bool) {
	es, ok := p.mapping(n, path, known)
	if !ok {
		return nil, false
	}
	m := make(map[string]entry, len(es))
	for _, e := range es {
		m[e.name] = e
	}
	return m, true
}

// required returns a field that must be present (and not null).
func (p *parser) required(m map[string]entry, parent *yaml.Node, path, field string) (entry, bool) {
	e, ok := m[field]
	if !ok {
		p.errorf(deref(parent).Line, join(path, field), "required")
		return entry{}, false
	}
	if isNull(e.val) {
		p.errorf(e.key.Line, join(path, field), "must not be empty")
		return entry{}, false
	}
	return e, true
}

// str decodes a string scalar.
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == tagStr {
		return n.Value, true
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() != tagNull {
		p.errorf(n.Line, path, "must be a string, got %s (quote it: %q)", describe(n), n.Value)
	} else {
		p.errorf(n.Line, path, "must be a string, got %s", describe(n))
	}
	return "", false
}

// id decodes and checks an id.
func (p *parser) id(n *yaml.Node, path string) (string, bool) {
	s, ok := p.str(n, path)
	if !ok {
		return "", false
	}
	if err := CheckID(s); err != nil {
		p.errorf(deref(n).Line, path, "%v", err)
		return s, false
	}
	return s, true
}

// uniqueID decodes an id that must not repeat within one list.
func (p *parser) uniqueID(n *yaml.Node, path string, seen map[string]int) (string, bool) {
	id, ok := p.id(n, path)
	if !ok {
		return id, false
	}
	line := deref(n).Line
	if first, dup := seen[id]; dup {
		p.errorf(line, path, "duplicate id %q (first used at line %d)", id, first)
		return id, false
	}
	seen[id] = line
	return id, true
}

// integer decodes a whole number in [lo, hi].
func (p *parser) integer(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != tagInt {
		p.errorf(n.Line, path, "must be a whole number, got %s", describe(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		p.errorf(n.Line, path, "%s is out of range", n.Value)
		return 0, false
	}
	if v < lo || v > hi {
		p.errorf(n.Line, path, "must be between %d and %d, got %d", lo, hi, v)
		return 0, false
	}
	return v, true
}

// budget decodes budget_usd: a finite number above zero.
func (p *parser) budget(n *yaml.Node) float64 {
	n = deref(n)
	var f float64
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || tag != tagInt && tag != tagFloat || n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		p.errorf(n.Line, "budget_usd", "must be an amount in US dollars, e.g. 5.00, got %s", describe(n))
		return 0
	}
	if f <= 0 {
		p.errorf(n.Line, "budget_usd", "must be greater than 0 (leave it out for no budget), got %v", f)
		return 0
	}
	return f
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// deref follows aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull
}

// describe names a node's value for a message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case tagNull:
			return "nothing"
		case tagStr:
			return strconv.Quote(n.Value)
		case tagBool:
			return "the boolean " + n.Value
		case tagInt, tagFloat:
			return "the number " + n.Value
		}
		return n.Value
	}
	return "an unsupported YAML node"
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
