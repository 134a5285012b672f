package ark

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	_ "image/gif"  // reference formats converted to PNG
	_ "image/jpeg" // reference formats accepted
	"image/png"
	"net/http"

	"github.com/likeness-run/likeness/pkg/provider"
	_ "golang.org/x/image/webp" // reference formats converted to PNG
)

// SeedEdit's limits on the input image (shared/providers.md section 6).
const (
	// MaxImageBytes caps the input image.
	MaxImageBytes = 10 << 20
	// minSide is the exclusive lower bound of each side in pixels.
	minSide = 14
	// maxAspect bounds width/height to [1/maxAspect, maxAspect].
	maxAspect = 3.0
)

// imageField returns the value of the request's image field: a data URI
// with a lowercase jpeg or png format, or the reference's URL when Ark could
// fetch it (provider.Image.FetchURL: a public host) and the reference is
// large (over inlineLimit bytes) and already JPEG or PNG, or when there are
// no bytes at all. A private bucket URL is never sent when the bytes are at
// hand. Other formats are converted to PNG.
// Images SeedEdit would reject (too small, too elongated, too large) are an
// Input error before anything is sent.
func imageField(ref provider.Image, inlineLimit int) (string, error) {
	if len(ref.Data) == 0 {
		if ref.URL != "" {
			return ref.URL, nil
		}
		return "", inputError("the reference has neither image bytes nor a URL")
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(ref.Data))
	if err != nil {
		return "", inputError("the reference is not a decodable image")
	}
	if cfg.Width <= minSide || cfg.Height <= minSide {
		return "", inputError(fmt.Sprintf("the reference is %dx%d; SeedEdit needs each side over %d px", cfg.Width, cfg.Height, minSide))
	}
	if r := float64(cfg.Width) / float64(cfg.Height); r > maxAspect || r < 1/maxAspect {
		return "", inputError(fmt.Sprintf("the reference is %dx%d; SeedEdit needs an aspect ratio between 1:3 and 3:1", cfg.Width, cfg.Height))
	}

	data, format := ref.Data, ""
	switch http.DetectContentType(data) {
	case "image/jpeg":
		format = "jpeg"
	case "image/png":
		format = "png"
	}
	if u := ref.FetchURL(); format != "" && u != "" && len(data) > inlineLimit {
		return u, nil
	}
	if format == "" {
		// WebP, GIF, ...: SeedEdit takes only JPEG and PNG.
		img, _, err := image.Decode(bytes.NewReader(data))
		if err != nil {
			return "", inputError("the reference could not be decoded for conversion to PNG")
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			return "", inputError("convert the reference to PNG: " + err.Error())
		}
		data, format = buf.Bytes(), "png"
	}
	if len(data) > MaxImageBytes {
		return "", inputError(fmt.Sprintf("the reference is %d bytes as %s; SeedEdit takes at most %d", len(data), format, MaxImageBytes))
	}
	return "data:image/" + format + ";base64," + base64.StdEncoding.EncodeToString(data), nil
}
