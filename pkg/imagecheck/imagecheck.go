// Package imagecheck checks a provider's output image before the worker
// stores it (design.md, task lifecycle step 6): it decodes, it is not a blank
// frame, and its size and aspect ratio are what was asked for. Providers
// return black frames, truncated downloads and wrongly sized images often
// enough that every output is checked; a failed check makes the output a
// flaky output, which the worker retries with a new derived seed within the
// spec's output-retry allowance (provider.BadOutput).
//
// Checks are a small pluggable list: Default returns the built-in ones, and
// a caller may add its own by implementing Check. Verify decodes and runs
// them in one call; every failure it returns is a *Failure.
package imagecheck

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // formats providers return
	_ "image/jpeg"
	_ "image/png"
	"math"
	"strconv"
	"strings"

	_ "golang.org/x/image/webp"
)

// MaxPixels bounds the images Decode accepts (64 megapixels, e.g.
// 8192×8192), so a hostile or broken header cannot make the worker allocate
// gigabytes.
const MaxPixels = 64 << 20

// ErrUndecodable is wrapped by the error Decode returns for data that is not
// a complete image in a supported format (PNG, JPEG, WebP, GIF).
var ErrUndecodable = errors.New("undecodable image")

// Output is a decoded output image.
type Output struct {
	// Data is the encoded bytes as the provider returned them.
	Data []byte
	// Image is the decoded image.
	Image image.Image
	// Format is the format name: "png", "jpeg", "webp" or "gif".
	Format string
	// Width and Height are the decoded size in pixels.
	Width, Height int
}

// Decode decodes data fully, so a truncated download fails here rather than
// when the image is first used. Errors wrap ErrUndecodable.
func Decode(data []byte) (*Output, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: no data", ErrUndecodable)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > MaxPixels/cfg.Height {
		return nil, fmt.Errorf("%w: %d×%d pixels is empty or too large", ErrUndecodable, cfg.Width, cfg.Height)
	}
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	b := img.Bounds()
	return &Output{Data: data, Image: img, Format: format, Width: b.Dx(), Height: b.Dy()}, nil
}

// Want is what the request asked for. Zero fields are not checked.
type Want struct {
	// Width and Height are the exact size in pixels; 0 means any.
	Width, Height int
	// AspectRatio is width/height (see ParseAspect); 0 means any.
	AspectRatio float64
	// AspectTolerance is the allowed relative deviation from AspectRatio.
	// Default (0): 0.03, which absorbs rounding to whole pixels and the
	// multiple-of-16 sizes some models snap to.
	AspectTolerance float64
}

// DefaultAspectTolerance is the AspectTolerance used when Want leaves it 0.
const DefaultAspectTolerance = 0.03

// Check is one output check.
type Check interface {
	// Name identifies the check in a Failure and in manifests: stable and
	// snake_case, e.g. "not_blank".
	Name() string
	// Check returns nil if o passes, or an error saying what is wrong.
	Check(o *Output, want Want) error
}

// Failure is a failed check.
type Failure struct {
	// Check is the name of the check that failed ("decode" when the data
	// did not decode).
	Check string
	// Msg says what is wrong, for the task record.
	Msg string
	// Err is the underlying error, if any (ErrUndecodable for "decode").
	Err error
}

func (f *Failure) Error() string { return "output check " + f.Check + ": " + f.Msg }

func (f *Failure) Unwrap() error { return f.Err }

// Default returns the built-in checks in the order Run applies them:
// NotBlank, Size and Aspect with their defaults.
func Default() []Check { return []Check{NotBlank{}, Size{}, Aspect{}} }

// Run applies checks to o in order and returns the first failure as a
// *Failure, or nil if every check passes.
func Run(o *Output, want Want, checks ...Check) error {
	for _, c := range checks {
		err := c.Check(o, want)
		if err == nil {
			continue
		}
		var f *Failure
		if errors.As(err, &f) {
			return f
		}
		return &Failure{Check: c.Name(), Msg: err.Error(), Err: err}
	}
	return nil
}

// Verify decodes data and runs checks on it. Every error is a *Failure;
// undecodable data fails the check named "decode" and matches
// ErrUndecodable with errors.Is. The decoded Output is returned even when a
// check fails, so the caller can record its size.
func Verify(data []byte, want Want, checks ...Check) (*Output, error) {
	o, err := Decode(data)
	if err != nil {
		return nil, &Failure{Check: "decode", Msg: err.Error(), Err: err}
	}
	return o, Run(o, want, checks...)
}

// ParseAspect parses an aspect ratio written "W:H" ("3:4", "16:9",
// "2.39:1") into W/H. It returns false for anything else, including
// "match_input_image", whose ratio only the reference image knows.
func ParseAspect(s string) (float64, bool) {
	ws, hs, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return 0, false
	}
	w, err1 := strconv.ParseFloat(strings.TrimSpace(ws), 64)
	h, err2 := strconv.ParseFloat(strings.TrimSpace(hs), 64)
	if err1 != nil || err2 != nil || !(w > 0) || !(h > 0) || math.IsInf(w, 0) || math.IsInf(h, 0) {
		return 0, false
	}
	return w / h, true
}
