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
	ref      bool   // a reference or inpainting image, shared by characters
}

// thumbMaker makes a run's thumbnails a character at a time. References
// and inpainting images are shared between characters, so their
// thumbnails are remembered from one character to the next.
type thumbMaker struct {
	cfg Config
	run string
	mu  sync.Mutex // guards refs and storedRefs: characters are made concurrently
	// refs maps a reference's key to its thumbnail's ("" when it has none).
	refs map[string]string
	// storedRefs is the listing of thumbs/refs/, read once.
	storedRefs map[string]bool
}

func newThumbMaker(cfg Config, run string) *thumbMaker {
	return &thumbMaker{cfg: cfg, run: run, refs: map[string]string{}}
}

// OwnThumbnail reports whether a record's output is its own thumbnail: its
// record says it is at most ThumbPX on its longest side and in a format
// browsers show (PNG, JPEG, WebP, GIF). A thumbnail of it would be no
// smaller, so none is made; the report and the sheet show the output. (A
// run of 100,000 small outputs would otherwise spend most of its fan-in
// copying each image to a JPEG of the same size.)
func OwnThumbnail(r manifest.Record) bool {
	if r.Width <= 0 || r.Height <= 0 || max(r.Width, r.Height) > ThumbPX {
		return false
	}
	switch r.ContentType {
	case "image/png", "image/jpeg", "image/webp", "image/gif":
		return true
	}
	return false
}

// make makes the missing thumbnails of one character's images and returns
// every image key that has one, mapped to its thumbnail's key.
func (m *thumbMaker) make(ctx context.Context, records []manifest.Record) (map[string]string, error) {
	cfg, run := m.cfg, m.run
	// Outputs' thumbnails sit under thumbs/<character>/ (see ThumbKey).
	prefix := store.RunPrefix(run) + "thumbs/" + records[0].Character + "/"
	existing, err := cfg.Store.List(ctx, prefix)
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
	addOutput := func(key, sha string) {
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
	addRef := func(key string) error {
		if key == "" || seen[key] {
			return nil
		}
		seen[key] = true
		m.mu.Lock()
		defer m.mu.Unlock()
		if t, done := m.refs[key]; done {
			if t != "" {
				thumbs[key] = t
			}
			return nil
		}
		sha := refSHA(key)
		if sha != "" {
			if m.storedRefs == nil {
				infos, err := cfg.Store.List(ctx, store.RunPrefix(run)+"thumbs/refs/")
				if err != nil {
					return fmt.Errorf("list thumbnails of run %s: %w", run, err)
				}
				m.storedRefs = make(map[string]bool, len(infos))
				for _, info := range infos {
					m.storedRefs[info.Key] = true
				}
			}
			if t := ThumbKey(run, key, sha); m.storedRefs[t] {
				thumbs[key], m.refs[key] = t, t
				return nil
			}
		}
		jobs = append(jobs, thumbJob{key: key, sha: sha, ref: true})
		return nil
	}
	for _, r := range records {
		if r.Status == manifest.Succeeded && r.OutputKey != "" && !OwnThumbnail(r) {
			addOutput(r.OutputKey, r.SHA256)
		}
		if err := addRef(r.ReferenceKey); err != nil {
			return nil, err
		}
		if err := addRef(r.EditImageKey); err != nil {
			return nil, err
		}
	}

	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Workers)
	for _, j := range jobs {
		g.Go(func() error {
			t, err := makeThumb(gctx, cfg, run, j)
			if err != nil {
				return err
			}
			if j.ref {
				m.mu.Lock()
				m.refs[j.key] = t
				m.mu.Unlock()
			}
			mu.Lock()
			defer mu.Unlock()
			if t != "" {
				thumbs[j.key] = t
			}
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
	key, _, err := storeThumb(ctx, cfg, run, j)
	return key, err
}

// makeThumbBytes is makeThumb returning the thumbnail rather than its key.
func makeThumbBytes(ctx context.Context, cfg Config, run string, j thumbJob) ([]byte, error) {
	_, data, err := storeThumb(ctx, cfg, run, j)
	return data, err
}

// storeThumb makes and stores one thumbnail and returns its key and bytes;
// "" and nil when the image is missing or not decodable (logged).
func storeThumb(ctx context.Context, cfg Config, run string, j thumbJob) (string, []byte, error) {
	data, err := cfg.Store.Get(ctx, j.key)
	if errors.Is(err, store.ErrNotExist) {
		cfg.Logger.WarnContext(ctx, "image missing: no thumbnail", "run_id", run, "key", j.key)
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("read %s for its thumbnail: %w", j.key, err)
	}
	if j.sha == "" {
		sum := sha256.Sum256(data)
		j.sha = hex.EncodeToString(sum[:])
	}
	out, err := Thumbnail(data)
	if err != nil {
		cfg.Logger.WarnContext(ctx, "image not decodable: no thumbnail", "run_id", run, "key", j.key, "err", err)
		return "", nil, nil
	}
	key := ThumbKey(run, j.key, j.sha)
	if err := cfg.Store.Put(ctx, key, out, "image/jpeg"); err != nil {
		return "", nil, fmt.Errorf("store thumbnail %s: %w", key, err)
	}
	return key, out, nil
}

// Thumbnail decodes a PNG, JPEG, WebP or GIF image and returns it as a
// JPEG at most ThumbPX pixels on its longest side, transparency flattened
// onto white. Smaller images keep their size. (The fan-in makes none for
// outputs its records show to be small already; see OwnThumbnail.)
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
