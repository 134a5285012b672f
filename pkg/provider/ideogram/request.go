package ideogram

import (
	"bytes"
	"fmt"
	"image"
	_ "image/gif"  // reference and mask formats accepted
	_ "image/jpeg" // reference and mask formats accepted
	"image/png"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/likeness-run/likeness/pkg/provider"
	_ "golang.org/x/image/webp" // reference and mask formats accepted
)

// Limits Ideogram puts on uploads.
const (
	// MaxReferenceBytes caps the character reference images (all of them
	// together; Ideogram takes one today).
	MaxReferenceBytes = 10 << 20
	// MaxEditImageBytes caps the image and the mask of an inpainting edit.
	MaxEditImageBytes = 10 << 20
)

// maskBlackLevel is the 8-bit level at or below which every channel of a
// neutral mask pixel must be for the pixel to count as black ("keep"). A
// small margin above 0 keeps JPEG noise in a black area from being
// repainted.
const maskBlackLevel = 16

// form is an encoded multipart request.
type form struct {
	path        string
	contentType string
	body        []byte
}

// buildForm maps a neutral request onto Ideogram's multipart form: the
// generate endpoint, or the inpaint endpoint when req.Image is set. It
// returns an Input *provider.Error for a request Ideogram would reject.
func buildForm(req provider.Request) (*form, error) {
	if strings.TrimSpace(req.Prompt) == "" {
		return nil, inputError("the prompt is empty")
	}
	if req.Seed < 0 || req.Seed > 2147483647 {
		return nil, inputError(fmt.Sprintf("seed %d is outside 0..2147483647", req.Seed))
	}
	inpaint := req.Image != nil
	if inpaint != (req.Mask != nil) {
		return nil, inputError("inpainting needs both an image and a mask")
	}

	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	field := func(name, value string) { _ = w.WriteField(name, value) }

	field("prompt", req.Prompt)
	field("seed", strconv.FormatInt(req.Seed, 10))
	field("num_images", "1")
	if v := param(req, "rendering_speed"); v != "" {
		field("rendering_speed", strings.ToUpper(v)) // Turbo -> TURBO
	}
	// Ideogram requires a style_type with a character reference; Replicate's
	// default is Auto.
	style := param(req, "style_type")
	if style == "" {
		style = "Auto"
	}
	field("style_type", strings.ToUpper(style))
	if v := param(req, "magic_prompt_option"); v != "" {
		field("magic_prompt", strings.ToUpper(v)) // On -> ON
	}
	if !inpaint {
		// The inpaint endpoint takes its size from the image and has no
		// negative prompt.
		if res := param(req, "resolution"); res != "" && res != "None" {
			field("resolution", res)
		} else if ar := param(req, "aspect_ratio"); ar != "" {
			field("aspect_ratio", strings.ReplaceAll(ar, ":", "x")) // "3:4" -> "3x4"
		}
		if v := param(req, "negative_prompt"); v != "" {
			field("negative_prompt", v)
		}
	}

	ref, refType, err := uploadable(req.Reference, "character reference")
	if err != nil {
		return nil, err
	}
	if len(ref) > MaxReferenceBytes {
		return nil, inputError(fmt.Sprintf("the character reference is %d bytes; Ideogram takes at most %d", len(ref), MaxReferenceBytes))
	}
	if err := filePart(w, "character_reference_images", "reference", refType, ref); err != nil {
		return nil, err
	}

	path := generatePath
	if inpaint {
		path = inpaintPath
		src, srcType, err := uploadable(*req.Image, "inpainting image")
		if err != nil {
			return nil, err
		}
		mask, err := invertMask(req.Mask.Data, src)
		if err != nil {
			return nil, err
		}
		if len(src) > MaxEditImageBytes || len(mask) > MaxEditImageBytes {
			return nil, inputError(fmt.Sprintf("the inpainting image and mask must each be at most %d bytes", MaxEditImageBytes))
		}
		if err := filePart(w, "image", "image", srcType, src); err != nil {
			return nil, err
		}
		if err := filePart(w, "mask", "mask", "image/png", mask); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, inputError("encode form: " + err.Error())
	}
	return &form{path: path, contentType: w.FormDataContentType(), body: buf.Bytes()}, nil
}

// param returns a string param, or "" when it is unset.
func param(req provider.Request, name string) string {
	s, _ := req.Params[name].(string)
	return s
}

// uploadable returns image bytes Ideogram accepts (JPEG, PNG or WebP) with
// their sniffed content type; other decodable formats are re-encoded as PNG.
func uploadable(img provider.Image, what string) ([]byte, string, error) {
	if len(img.Data) == 0 {
		return nil, "", inputError(fmt.Sprintf("the %s has no image bytes (Ideogram takes uploads, not URLs)", what))
	}
	ct := http.DetectContentType(img.Data)
	switch ct {
	case "image/jpeg", "image/png", "image/webp":
		return img.Data, ct, nil
	}
	decoded, _, err := image.Decode(bytes.NewReader(img.Data))
	if err != nil {
		return nil, "", inputError(fmt.Sprintf("the %s is not an image Ideogram accepts (%s)", what, ct))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, decoded); err != nil {
		return nil, "", inputError(fmt.Sprintf("re-encode the %s as PNG: %v", what, err))
	}
	return buf.Bytes(), "image/png", nil
}

// filePart adds a file part with an explicit image content type (a part
// without one arrives as application/octet-stream).
func filePart(w *multipart.Writer, field, name, contentType string, data []byte) error {
	ext := strings.TrimPrefix(contentType, "image/")
	if ext == "jpeg" {
		ext = "jpg"
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, field, name+"."+ext))
	h.Set("Content-Type", contentType)
	part, err := w.CreatePart(h)
	if err != nil {
		return inputError("encode form: " + err.Error())
	}
	_, _ = part.Write(data)
	return nil
}

// invertMask converts likeness's neutral mask (non-black = repaint, black =
// keep) into Ideogram's (black = repaint, white = keep): a grayscale PNG of
// the same size, black where the neutral mask is non-black and white where
// it is black. Transparent pixels count as black. The mask must have the
// image's dimensions, as Ideogram requires.
func invertMask(neutral, img []byte) ([]byte, error) {
	m, _, err := image.Decode(bytes.NewReader(neutral))
	if err != nil {
		return nil, inputError("the inpainting mask is not a decodable image")
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		return nil, inputError("the inpainting image is not a decodable image")
	}
	b := m.Bounds()
	if b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, inputError(fmt.Sprintf("the mask is %dx%d but the image is %dx%d; Ideogram needs them the same size",
			b.Dx(), b.Dy(), cfg.Width, cfg.Height))
	}
	out := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	const black = maskBlackLevel * 0x101 // on RGBA()'s 16-bit scale
	for y := b.Min.Y; y < b.Max.Y; y++ {
		row := out.Pix[(y-b.Min.Y)*out.Stride:]
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := m.At(x, y).RGBA() // alpha-premultiplied
			if r <= black && g <= black && bl <= black {
				row[x-b.Min.X] = 0xff // keep
			} // else 0: repaint
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, out); err != nil {
		return nil, inputError("encode mask: " + err.Error())
	}
	return buf.Bytes(), nil
}

func inputError(msg string) *provider.Error {
	return &provider.Error{Class: provider.Input, Provider: ProviderName, Message: msg}
}
