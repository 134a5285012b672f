package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // reference formats accepted by the server
	"image/jpeg"  // also registers JPEG references
	"image/png"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	_ "golang.org/x/image/webp" // reference formats accepted by the server
)

const (
	// maxCreateBody caps a create request body (data: URI references included).
	maxCreateBody = 64 << 20
	// maxRefBytes caps a reference fetched from a URL.
	maxRefBytes = 64 << 20
	// maxRefPixels refuses decompression bombs.
	maxRefPixels = 40_000_000
	// refCacheSize bounds the decoded-reference cache.
	refCacheSize = 64
	// minCancelAfter is Replicate's minimum Cancel-After.
	minCancelAfter = 5 * time.Second
)

// refFields are the input fields a reference image may arrive in, in the
// order they are looked for.
var refFields = [...]string{"input_image", "character_reference_image", "image", "input_images", "reference_images"}

// createRequest is a validated create, ready for admission.
type createRequest struct {
	model    string
	behavior ModelBehavior
	input    json.RawMessage // echo, with data: URIs elided
	// inputKey identifies the exact request: the model and the whole
	// input, data URIs included (see Stats.RepeatedCreates).
	inputKey [sha256.Size]byte
	prompt   string // prompt, or the text of a tags model
	seed     int64
	hasSeed  bool
	aspect   string // "W:H" or "match_input_image"
	size     int
	ext      string        // "png" or "jpg"
	latency  time.Duration // input latency_ms, or -1
	ref      image.Image   // nil for a tags model
	tags     []string      // output of a tags model
	wait     time.Duration // Prefer: wait hold, 0 without the header
	cancel   time.Duration // Cancel-After, 0 without the header

	// edit and editMask: see prediction.
	edit, editMask image.Image
}

// problem is an RFC 7807 error body, as Replicate answers.
type problem struct {
	Title         string         `json:"title"`
	Detail        string         `json:"detail"`
	Status        int            `json:"status"`
	InvalidFields []invalidField `json:"invalid_fields,omitempty"`
}

type invalidField struct {
	Type        string `json:"type"`
	Field       string `json:"field"`
	Description string `json:"description"`
}

func badRequest(format string, args ...any) *problem {
	return &problem{Title: "Bad request", Detail: fmt.Sprintf(format, args...), Status: http.StatusBadRequest}
}

func invalidInput(field, format string, args ...any) *problem {
	desc := fmt.Sprintf(format, args...)
	return &problem{
		Title: "Input validation failed", Detail: "- " + field + ": " + desc, Status: http.StatusUnprocessableEntity,
		InvalidFields: []invalidField{{Type: "invalid", Field: field, Description: desc}},
	}
}

func notFound() *problem {
	return &problem{Title: "Not found", Detail: "The requested resource could not be found.", Status: http.StatusNotFound}
}

// parseCreate reads and validates a create request. model is "owner/name"
// from the path, or "" when it comes from the body's "version".
func (s *Server) parseCreate(w http.ResponseWriter, r *http.Request, model string) (*createRequest, *problem) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCreateBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, &problem{Title: "Request too large", Detail: fmt.Sprintf("request body exceeds %d MiB", maxCreateBody>>20), Status: http.StatusRequestEntityTooLarge}
		}
		return nil, badRequest("read body: %v", err)
	}
	var in struct {
		Input   map[string]any `json:"input"`
		Version string         `json:"version"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("body is not valid JSON: %v", err)
	}
	if model == "" { // POST /predictions: version is owner/name or owner/name:hash
		model, _, _ = strings.Cut(in.Version, ":")
		if model == "" {
			return nil, invalidInput("version", "version is required")
		}
	}
	b, ok := s.models[model]
	if !ok {
		return nil, notFound()
	}
	req := &createRequest{model: model, behavior: b, latency: -1, size: s.cfg.OutputSize, ext: "png", aspect: b.AspectRatio}
	if req.aspect == "" {
		req.aspect = "1:1"
	}
	if req.wait, err = parsePrefer(r.Header.Values("Prefer")); err != nil {
		return nil, badRequest("%v", err)
	}
	if req.cancel, err = parseCancelAfter(r.Header.Get("Cancel-After")); err != nil {
		return nil, badRequest("%v", err)
	}
	if in.Input == nil {
		return nil, invalidInput("input", "input is required")
	}
	if p := s.parseInput(r, req, in.Input); p != nil {
		return nil, p
	}
	req.input, err = json.Marshal(elideDataURIs(in.Input))
	if err != nil { // unreachable: the map came from JSON
		return nil, badRequest("input: %v", err)
	}
	full, _ := json.Marshal(in.Input) // keys sorted: the same input, the same bytes
	req.inputKey = sha256.Sum256(append([]byte(model+"\x00"), full...))
	return req, nil
}

// parseInput validates the model input into req.
func (s *Server) parseInput(r *http.Request, req *createRequest, in map[string]any) *problem {
	textField := "prompt"
	if req.behavior.Profile == TagsProfile {
		textField = "text"
	}
	text, _ := in[textField].(string)
	if strings.TrimSpace(text) == "" {
		return invalidInput(textField, "%s is required", textField)
	}
	req.prompt = text
	if v, ok := in["seed"]; ok && v != nil {
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return invalidInput("seed", "seed must be an integer")
		}
		req.seed, req.hasSeed = int64(f), true
	}
	if v, ok := in["latency_ms"]; ok {
		f, ok := v.(float64)
		if !ok || !(f >= 0) || f > 3_600_000 {
			return invalidInput("latency_ms", "latency_ms must be a number of milliseconds in [0, 3600000]")
		}
		req.latency = time.Duration(f * float64(time.Millisecond))
	}
	if req.behavior.Profile == TagsProfile {
		n := 5
		if v, ok := in["number_of_tags"]; ok {
			f, ok := v.(float64)
			if !ok || f != math.Trunc(f) || f < 1 || f > 50 {
				return invalidInput("number_of_tags", "number_of_tags must be an integer in [1, 50]")
			}
			n = int(f)
		}
		req.tags = topicTags(text, n)
		return nil
	}
	if v, ok := in["aspect_ratio"]; ok {
		a, _ := v.(string)
		if _, err := parseAspect(a); err != nil {
			return invalidInput("aspect_ratio", "%v", err)
		}
		req.aspect = a
	}
	if v, ok := in["size"]; ok {
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) || f < 64 || f > 2048 {
			return invalidInput("size", "size must be an integer in [64, 2048]")
		}
		req.size = int(f)
	}
	if f, _ := in["output_format"].(string); f == "jpg" || f == "jpeg" {
		req.ext = "jpg"
	}
	for _, field := range refFields {
		v, ok := in[field]
		if !ok || v == nil {
			continue
		}
		name := field
		if list, ok := v.([]any); ok {
			if len(list) == 0 {
				continue
			}
			v, name = list[0], field+"[0]"
		}
		uri, ok := v.(string)
		if !ok {
			return invalidInput(name, "must be a URI string")
		}
		img, p := s.resolveRef(r, name, uri)
		if p != nil {
			return p
		}
		req.ref = img
		if field == "character_reference_image" {
			return s.parseEdit(r, req, in)
		}
		return nil
	}
	// Text-to-image: no reference. Render a neutral placeholder so the
	// output still differs by profile, prompt and seed.
	req.ref = placeholder()
	return nil
}

// parseEdit reads Ideogram Character's inpainting inputs, image and mask,
// when both are set. Ideogram's mask is black where it repaints; it is kept
// inverted, in likeness's convention, for RenderEdit.
func (s *Server) parseEdit(r *http.Request, req *createRequest, in map[string]any) *problem {
	imgURI, hasImage := in["image"].(string)
	maskURI, hasMask := in["mask"].(string)
	switch {
	case !hasImage && !hasMask:
		return nil
	case !hasImage || !hasMask:
		return invalidInput("mask", "image and mask go together: both or neither")
	}
	img, p := s.resolveRef(r, "image", imgURI)
	if p != nil {
		return p
	}
	mask, p := s.resolveRef(r, "mask", maskURI)
	if p != nil {
		return p
	}
	if img.Bounds().Size() != mask.Bounds().Size() {
		return invalidInput("mask", "the mask is %v but the image is %v", mask.Bounds().Size(), img.Bounds().Size())
	}
	b := mask.Bounds()
	inv := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := range b.Dy() {
		for x := range b.Dx() {
			inv.Pix[y*inv.Stride+x] = 0xff - color.GrayModel.Convert(mask.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
		}
	}
	req.edit, req.editMask = img, inv
	return nil
}

// parseAspect parses an aspect ratio; it returns 0 for "match_input_image".
func parseAspect(s string) (float64, error) {
	if s == "match_input_image" {
		return 0, nil
	}
	ratio, err := parseRatio(s)
	if err != nil || ratio < 0.1 || ratio > 10 {
		return 0, fmt.Errorf("aspect_ratio %q is not W:H (or match_input_image)", s)
	}
	return ratio, nil
}

// parsePrefer returns the hold asked by "Prefer: wait" or "wait=N"
// (1 <= N <= 60; bare "wait" holds 60 s), or 0 without it.
func parsePrefer(values []string) (time.Duration, error) {
	for _, v := range values {
		for _, tok := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' }) {
			tok = strings.TrimSpace(tok)
			if tok == "wait" {
				return 60 * time.Second, nil
			}
			if n, ok := strings.CutPrefix(tok, "wait="); ok {
				secs, err := strconv.Atoi(n)
				if err != nil || secs < 1 || secs > 60 || n[0] == '0' {
					return 0, fmt.Errorf("Prefer: %q does not match ^wait(=([1-9]|[1-9][0-9]|60))?$", tok)
				}
				return time.Duration(secs) * time.Second, nil
			}
		}
	}
	return 0, nil
}

// parseCancelAfter parses a Cancel-After header: a Go duration ("30s",
// "1h30m") or bare seconds.
func parseCancelAfter(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, err2 := strconv.ParseFloat(v, 64)
		if err2 != nil || math.IsNaN(secs) || math.IsInf(secs, 0) {
			return 0, fmt.Errorf("Cancel-After: %q is not a duration", v)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < minCancelAfter {
		return 0, fmt.Errorf("Cancel-After: %s is below the minimum %s", d, minCancelAfter)
	}
	return d, nil
}

// elideDataURIs returns a copy of the input for echoing, with data: URIs
// shortened so stored predictions stay small.
func elideDataURIs(in map[string]any) map[string]any {
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case string:
			if strings.HasPrefix(x, "data:") && len(x) > 64 {
				meta, _, _ := strings.Cut(x, ",")
				return fmt.Sprintf("%s,<%d bytes elided>", meta, len(x))
			}
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = walk(e)
			}
			return out
		case map[string]any:
			out := make(map[string]any, len(x))
			for k, e := range x {
				out[k] = walk(e)
			}
			return out
		}
		return v
	}
	return walk(in).(map[string]any)
}

// refCache holds decoded references by content hash, so a fleet sending
// the same character reference thousands of times decodes it once.
type refCache struct {
	mu   sync.Mutex
	imgs map[[sha256.Size]byte]image.Image
}

// decodeRef decodes a reference image, from the cache when it can.
func (s *Server) decodeRef(key [sha256.Size]byte, data []byte) (image.Image, error) {
	c := &s.refs
	c.mu.Lock()
	img, ok := c.imgs[key]
	c.mu.Unlock()
	if ok {
		return img, nil
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("cannot decode reference image (want PNG, JPEG, WebP or GIF): %v", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width*cfg.Height > maxRefPixels {
		return nil, fmt.Errorf("reference image is %dx%d; at most %d pixels are accepted", cfg.Width, cfg.Height, maxRefPixels)
	}
	img, _, err = image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("cannot decode reference image: %v", err)
	}
	c.mu.Lock()
	if len(c.imgs) >= refCacheSize {
		for k := range c.imgs { // evict one arbitrary entry
			delete(c.imgs, k)
			break
		}
	}
	c.imgs[key] = img
	c.mu.Unlock()
	return img, nil
}

// onePixel is a 1×1 white image, for validating profiles.
func onePixel() image.Image {
	img := image.NewGray(image.Rect(0, 0, 1, 1))
	img.Pix[0] = 0xff
	return img
}

// placeholder stands in for a missing reference: a soft grey gradient.
func placeholder() image.Image {
	img := image.NewGray(image.Rect(0, 0, 64, 64))
	for y := range 64 {
		for x := range 64 {
			img.Pix[y*img.Stride+x] = uint8(96 + x + y/2)
		}
	}
	return img
}

// render draws the output of a succeeded prediction and encodes it.
func (s *Server) render(p *prediction) ([]byte, error) {
	var out image.Image
	switch {
	case p.outcome == outcomeBlank:
		w, h := frameDims(p.ref.Bounds(), p.size, p.aspect)
		if p.edit != nil {
			w, h = p.edit.Bounds().Dx(), p.edit.Bounds().Dy()
		}
		out = image.NewGray(image.Rect(0, 0, w, h)) // all zero: opaque black
	case p.edit != nil:
		img, err := RenderEdit(p.ref, p.edit, p.editMask, p.behavior.Profile, p.prompt, p.seed)
		if err != nil {
			return nil, err
		}
		out = img
	default:
		ref := p.ref
		params := map[string]any{"size": p.size, "aspect_ratio": p.aspect}
		if !slices.Contains(s.renderAspects, p.aspect) {
			// Render knows fewer ratios than Replicate's models: crop the
			// reference to the ratio and let Render match it.
			ratio, _ := parseAspect(p.aspect)
			ref = cropTo(ref, ratio)
			params["aspect_ratio"] = "match_input_image"
		}
		img, err := Render(ref, p.behavior.Profile, p.prompt, p.seed, params)
		if err != nil {
			return nil, err
		}
		out = img
	}
	var buf bytes.Buffer
	var err error
	if p.ext == "jpg" {
		err = jpeg.Encode(&buf, out, &jpeg.Options{Quality: 90})
	} else {
		err = s.png.Encode(&buf, out)
	}
	return buf.Bytes(), err
}

// frameDims is the output size for a reference of bounds src, with the
// same rounding as Render.
func frameDims(src image.Rectangle, long int, aspect string) (w, h int) {
	ratio, _ := parseAspect(aspect)
	if ratio == 0 {
		ratio = float64(src.Dx()) / float64(src.Dy())
	}
	if ratio >= 1 {
		return long, max(1, int(math.Round(float64(long)/ratio)))
	}
	return max(1, int(math.Round(float64(long)*ratio))), long
}

// cropTo crops img to ratio (width/height), centred horizontally and
// keeping more of the top, as Render does.
func cropTo(img image.Image, ratio float64) image.Image {
	sub, ok := img.(interface {
		SubImage(image.Rectangle) image.Image
	})
	if !ok || ratio <= 0 {
		return img
	}
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	crop := b
	if float64(sw)/float64(sh) > ratio {
		cw := max(1, int(math.Round(float64(sh)*ratio)))
		x0 := b.Min.X + (sw-cw)/2
		crop = image.Rect(x0, b.Min.Y, x0+cw, b.Max.Y)
	} else {
		ch := max(1, int(math.Round(float64(sw)/ratio)))
		y0 := b.Min.Y + (sh-ch)*3/10
		crop = image.Rect(b.Min.X, y0, b.Max.X, y0+ch)
	}
	return sub.SubImage(crop)
}

// pngPool lets png.Encoder reuse its buffers between outputs.
type pngPool struct{ pool sync.Pool }

func (p *pngPool) Get() *png.EncoderBuffer {
	b, _ := p.pool.Get().(*png.EncoderBuffer)
	return b
}

func (p *pngPool) Put(b *png.EncoderBuffer) { p.pool.Put(b) }

// topicTags picks the n most frequent content words of text, in order of
// frequency then first appearance, lower-case and hyphenated.
func topicTags(text string, n int) []string {
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-'
	})
	count := make(map[string]int)
	first := make(map[string]int)
	for i, w := range words {
		w = strings.Trim(w, "-")
		if len(w) < 4 || stopWord(w) {
			continue
		}
		if _, ok := first[w]; !ok {
			first[w] = i
		}
		count[w]++
	}
	tags := make([]string, 0, len(count))
	for w := range count {
		tags = append(tags, w)
	}
	sort.Slice(tags, func(i, j int) bool {
		if count[tags[i]] != count[tags[j]] {
			return count[tags[i]] > count[tags[j]]
		}
		return first[tags[i]] < first[tags[j]]
	})
	return tags[:min(n, len(tags))]
}

func stopWord(w string) bool {
	switch w {
	case "about", "also", "been", "could", "each", "from", "have", "into", "just", "like", "more", "only",
		"other", "over", "should", "some", "such", "than", "that", "their", "them", "then", "there", "these",
		"they", "this", "those", "very", "were", "what", "when", "which", "will", "with", "would", "your":
		return true
	}
	return false
}
