package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // formats a provider may return
	"image/jpeg"
	_ "image/png"
	"path"
	"strings"
	"sync"

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp"
	"golang.org/x/sync/errgroup"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/store"
)

// ThumbPX is the longest side of a thumbnail, in pixels.
const ThumbPX = 256

// thumbQuality is the JPEG quality of thumbnails: small files, no visible
// blocks at report size.
const thumbQuality = 82

// thumbJob is one image to thumbnail.
type thumbJob struct {
	key, sha string // sha may be empty: computed from the bytes
}

// makeThumbs makes the missing thumbnails of the run's images and returns
// every image key that has one, mapped to its thumbnail's key.
func makeThumbs(ctx context.Context, cfg Config, run string, records []manifest.Record) (map[string]string, error) {
	existing, err := cfg.Store.List(ctx, store.RunPrefix(run)+"thumbs/")
	if err != nil {
		return nil, fmt.Errorf("list thumbnails of run %s: %w", run, err)
	}
	stored := make(map[string]bool, len(existing))
	for _, info := range existing {
		stored[info.Key] = true
	}

	thumbs := make(map[string]string)
	var jobs []thumbJob
	seen := make(map[string]bool)
	add := func(key, sha string) {
		if key == "" || seen[key] {
			return
		}
		seen[key] = true
		if sha != "" {
			if t := ThumbKey(run, key, sha); stored[t] {
				thumbs[key] = t
				return
			}
		}
		jobs = append(jobs, thumbJob{key: key, sha: sha})
	}
	for _, r := range records {
		if r.Status == manifest.Succeeded && r.OutputKey != "" {
			add(r.OutputKey, r.SHA256)
		}
		add(r.ReferenceKey, refSHA(r.ReferenceKey))
		add(r.EditImageKey, refSHA(r.EditImageKey))
	}

	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Workers)
	for _, j := range jobs {
		g.Go(func() error {
			t, err := makeThumb(gctx, cfg, run, j)
			if err != nil || t == "" {
				return err
			}
			mu.Lock()
			thumbs[j.key] = t
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return thumbs, nil
}

// refSHA is the sha256 in a content-addressed refs/<sha256>.<ext> key, or
// "" for any other key.
func refSHA(key string) string {
	base, ok := strings.CutPrefix(key, "refs/")
	if !ok {
		return ""
	}
	base = strings.TrimSuffix(base, path.Ext(base))
	if len(base) != 64 {
		return ""
	}
	if _, err := hex.DecodeString(base); err != nil {
		return ""
	}
	return base
}

// makeThumb stores one thumbnail and returns its key; "" when the image is
// missing or not decodable (logged).
func makeThumb(ctx context.Context, cfg Config, run string, j thumbJob) (string, error) {
	data, err := cfg.Store.Get(ctx, j.key)
	if errors.Is(err, store.ErrNotExist) {
		cfg.Logger.WarnContext(ctx, "image missing: no thumbnail", "run_id", run, "key", j.key)
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s for its thumbnail: %w", j.key, err)
	}
	if j.sha == "" {
		sum := sha256.Sum256(data)
		j.sha = hex.EncodeToString(sum[:])
	}
	out, err := Thumbnail(data)
	if err != nil {
		cfg.Logger.WarnContext(ctx, "image not decodable: no thumbnail", "run_id", run, "key", j.key, "err", err)
		return "", nil
	}
	key := ThumbKey(run, j.key, j.sha)
	if err := cfg.Store.Put(ctx, key, out, "image/jpeg"); err != nil {
		return "", fmt.Errorf("store thumbnail %s: %w", key, err)
	}
	return key, nil
}

// Thumbnail decodes a PNG, JPEG, WebP or GIF image and returns it as a
// JPEG at most ThumbPX pixels on its longest side, transparency flattened
// onto white. Smaller images keep their size.
func Thumbnail(data []byte) ([]byte, error) {
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decode image: %w", err)
	}
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if w == 0 || h == 0 {
		return nil, errors.New("decode image: empty image")
	}
	if long := max(w, h); long > ThumbPX {
		w, h = max(1, w*ThumbPX/long), max(1, h*ThumbPX/long)
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(dst, dst.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.BiLinear.Scale(dst, dst.Bounds(), src, b, draw.Over, nil)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, dst, &jpeg.Options{Quality: thumbQuality}); err != nil {
		return nil, fmt.Errorf("encode thumbnail: %w", err)
	}
	return buf.Bytes(), nil
}
