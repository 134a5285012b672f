package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // references the sim accepts; re-encoded as PNG for OpenAI
	_ "image/jpeg"
	"image/png"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"

	"github.com/likeness-run/likeness/pkg/provider"
	_ "golang.org/x/image/webp" // masks and inpainting sources may be WebP
)

// Endpoint paths, relative to Config.BaseURL.
const (
	editsPath       = "/images/edits"
	generationsPath = "/images/generations"
)

// wireModel is the model name sent to OpenAI. It is always explicit: the
// endpoints default to other models when it is missing.
const wireModel = "gpt-image-1"

// sizeForAspect maps the neutral aspect_ratio param to OpenAI's size.
var sizeForAspect = map[string]string{
	"1:1": "1024x1024",
	"3:2": "1536x1024",
	"2:3": "1024x1536",
}

// SizeFor returns the OpenAI size for an aspect_ratio value
// ("3:2" -> "1536x1024").
func SizeFor(aspectRatio string) (string, bool) {
	s, ok := sizeForAspect[aspectRatio]
	return s, ok
}

// maskBlack is the luminance below which a neutral mask pixel counts as
// black (keep). Likeness repaints every non-black pixel; the small
// tolerance keeps JPEG noise around black from opening holes in the mask.
const maskBlack = 26

// wireRequest is one encoded HTTP request body.
type wireRequest struct {
	path        string
	contentType string
	body        []byte
}

// options are the params as OpenAI fields.
type options struct {
	size, quality, fidelity, background, format, moderation string
	compression                                             *int
}

func readOptions(params map[string]any) (options, error) {
	str := func(name string) string { s, _ := params[name].(string); return s }
	o := options{
		quality: str("quality"), fidelity: str("input_fidelity"), background: str("background"),
		format: str("output_format"), moderation: str("moderation"),
	}
	size, ratio := str("size"), str("aspect_ratio")
	if ratio != "" {
		fromRatio, ok := SizeFor(ratio)
		if !ok {
			return o, fmt.Errorf("aspect_ratio %q is not one gpt-image-1 renders (1:1, 3:2, 2:3)", ratio)
		}
		if size != "" && size != fromRatio {
			return o, fmt.Errorf("aspect_ratio %s asks for size %s but size is %s; set one of them", ratio, fromRatio, size)
		}
		size = fromRatio
	}
	o.size = size
	if v, ok := params["output_compression"]; ok {
		n, ok := asInt(v)
		if !ok {
			return o, fmt.Errorf("output_compression %v is not a whole number", v)
		}
		if o.format != "jpeg" && o.format != "webp" {
			return o, errors.New("output_compression applies only to output_format jpeg or webp")
		}
		o.compression = &n
	}
	if o.background == "transparent" && o.format == "jpeg" {
		return o, errors.New("background transparent needs output_format png or webp")
	}
	return o, nil
}

func asInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case uint64:
		return int(n), true
	case float64:
		if n == float64(int(n)) {
			return int(n), true
		}
	}
	return 0, false
}

// buildWire encodes req: an edit when any input image is present, a
// generation otherwise.
func buildWire(req provider.Request) (wireRequest, error) {
	o, err := readOptions(req.Params)
	if err != nil {
		return wireRequest{}, err
	}
	if req.Prompt == "" {
		return wireRequest{}, errors.New("prompt is empty")
	}
	hasRef := len(req.Reference.Data) > 0
	if req.Image == nil && !hasRef {
		return buildGeneration(req.Prompt, o)
	}
	return buildEdit(req, o)
}

func buildGeneration(prompt string, o options) (wireRequest, error) {
	body := struct {
		Model             string `json:"model"`
		Prompt            string `json:"prompt"`
		N                 int    `json:"n"`
		Size              string `json:"size,omitempty"`
		Quality           string `json:"quality,omitempty"`
		Background        string `json:"background,omitempty"`
		OutputFormat      string `json:"output_format,omitempty"`
		OutputCompression *int   `json:"output_compression,omitempty"`
		Moderation        string `json:"moderation,omitempty"`
	}{wireModel, prompt, 1, o.size, o.quality, o.background, o.format, o.compression, o.moderation}
	data, err := json.Marshal(body)
	if err != nil {
		return wireRequest{}, err
	}
	return wireRequest{path: generationsPath, contentType: "application/json", body: data}, nil
}

func buildEdit(req provider.Request, o options) (wireRequest, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	field := func(name, value string) {
		if value != "" {
			_ = mw.WriteField(name, value) // writes to a bytes.Buffer cannot fail
		}
	}
	file := func(name, filename, ctype string, data []byte) {
		h := make(textproto.MIMEHeader)
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="%s"; filename="%s"`, name, filename))
		h.Set("Content-Type", ctype)
		w, _ := mw.CreatePart(h)
		_, _ = w.Write(data)
	}

	field("model", wireModel)
	field("prompt", req.Prompt)
	var maskSize image.Point
	if req.Image != nil {
		data, ctype, err := uploadable(req.Image.Data)
		if err != nil {
			return wireRequest{}, fmt.Errorf("inpainting image: %w", err)
		}
		cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			return wireRequest{}, fmt.Errorf("inpainting image: %w", err)
		}
		maskSize = image.Pt(cfg.Width, cfg.Height)
		file("image[]", "image"+extension(ctype), ctype, data)
	}
	if len(req.Reference.Data) > 0 {
		data, ctype, err := uploadable(req.Reference.Data)
		if err != nil {
			return wireRequest{}, fmt.Errorf("reference image: %w", err)
		}
		file("image[]", "reference"+extension(ctype), ctype, data)
	}
	if req.Image != nil && req.Mask != nil {
		mask, err := ConvertMask(req.Mask.Data, maskSize.X, maskSize.Y)
		if err != nil {
			return wireRequest{}, err
		}
		file("mask", "mask.png", "image/png", mask)
	}
	fidelity := o.fidelity
	if fidelity == "" {
		fidelity = DefaultInputFidelity
	}
	field("input_fidelity", fidelity)
	field("n", "1")
	field("size", o.size)
	field("quality", o.quality)
	field("background", o.background)
	field("output_format", o.format)
	if o.compression != nil {
		field("output_compression", strconv.Itoa(*o.compression))
	}
	// moderation is not sent: the edits endpoint accepts it only on
	// generations (shared/providers.md, openai-go ImageEditParams).
	if err := mw.Close(); err != nil {
		return wireRequest{}, err
	}
	return wireRequest{path: editsPath, contentType: mw.FormDataContentType(), body: buf.Bytes()}, nil
}

// uploadable returns image bytes in a format OpenAI accepts (PNG, JPEG or
// WebP) with their sniffed content type; other decodable formats (GIF) are
// re-encoded as PNG.
func uploadable(data []byte) ([]byte, string, error) {
	if len(data) == 0 {
		return nil, "", errors.New("no image bytes")
	}
	switch ct := http.DetectContentType(data); ct {
	case "image/png", "image/jpeg", "image/webp":
		return data, ct, nil
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, "", errors.New("not a PNG, JPEG or WebP image")
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "image/png", nil
}

func extension(ctype string) string {
	switch ctype {
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	}
	return ".png"
}

// ConvertMask turns a likeness mask (white or any non-black pixel =
// repaint, black = keep; any image format) into OpenAI's: a w×h PNG whose
// alpha is 0 where the image is to be repainted and 255 where it is kept.
// A mask of another size is scaled to w×h (nearest neighbour), since OpenAI
// requires the mask to match the first image.
//
// The conversion is binary rather than alpha = inverted luminance: OpenAI
// edits only fully transparent pixels, so a grey (partly transparent) pixel
// would be kept, against likeness's "non-black is repainted". Luminance
// below maskBlack counts as black. An all-black mask is an error.
func ConvertMask(data []byte, w, h int) ([]byte, error) {
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("mask: target size %dx%d is empty", w, h)
	}
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("mask: %w", err)
	}
	sb := src.Bounds()
	if sb.Empty() {
		return nil, errors.New("mask: empty image")
	}
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	keep := color.NRGBA{A: 255}
	repaint := false
	for y := range h {
		sy := sb.Min.Y + y*sb.Dy()/h
		for x := range w {
			sx := sb.Min.X + x*sb.Dx()/w
			if color.GrayModel.Convert(src.At(sx, sy)).(color.Gray).Y < maskBlack {
				dst.SetNRGBA(x, y, keep)
			} else {
				repaint = true // zero value: fully transparent
			}
		}
	}
	if !repaint {
		// An all-black mask asks to change nothing; it would also encode
		// without an alpha channel, which OpenAI rejects.
		return nil, errors.New("mask: no pixel to repaint (the mask is all black)")
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, dst); err != nil {
		return nil, fmt.Errorf("mask: %w", err)
	}
	return buf.Bytes(), nil
}
