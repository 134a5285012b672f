package spec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	// Reference images may be PNG, JPEG or WebP; the format is sniffed from
	// the content, never taken from the extension.
	_ "image/jpeg"
	_ "image/png"

	_ "golang.org/x/image/webp"
)

var (
	// windowsAbs matches C:\ and C:/ paths.
	windowsAbs = regexp.MustCompile(`^[A-Za-z]:[/\\]`)
	// schemeLike matches anything with a colon before the first slash, such
	// as http:, file: or data:.
	schemeLike = regexp.MustCompile(`^[^/]*:`)
)

// imageFormats maps image.DecodeConfig's format names to content type and
// extension.
var imageFormats = map[string]struct{ contentType, ext string }{
	"png":  {"image/png", "png"},
	"jpeg": {"image/jpeg", "jpg"},
	"webp": {"image/webp", "webp"},
}

// reference checks a character's reference and, for a local file, reads it.
func (p *parser) reference(line int, field, src string) (Reference, bool) {
	bad := func(format string, args ...any) (Reference, bool) {
		p.errorf(line, field, format, args...)
		return Reference{Source: src}, false
	}
	switch {
	case src == "":
		return bad("must not be empty")
	case strings.HasPrefix(strings.ToLower(src), "https://"):
		return p.remote(line, field, src)
	case strings.HasPrefix(src, "/") || strings.HasPrefix(src, `\`) || windowsAbs.MatchString(src):
		return bad("%q is an absolute path; use a path relative to the spec file", src)
	case schemeLike.MatchString(src):
		return bad("%q: only https:// URLs or paths relative to the spec file are allowed", src)
	case strings.Contains(src, `\`):
		return bad("%q: use forward slashes in paths", src)
	case slices.Contains(strings.Split(src, "/"), ".."):
		return bad("%q is outside the spec's directory; references must be files below it", src)
	case !fs.ValidPath(src):
		return bad("%q is not a clean relative path (no \"./\", \"//\" or trailing \"/\")", src)
	case p.refs == nil:
		return bad("%q: local references cannot be read here; use an https:// URL", src)
	}
	name := path.Join(p.dir, src)
	if ref, ok := p.loaded[name]; ok {
		return ref, true
	}
	ref, err := readReference(p.refs, name)
	if err != nil {
		p.errs = append(p.errs, &Error{File: p.file, Line: line, Path: field, Msg: fmt.Sprintf("%s %s", src, err.msg), Err: err.err})
		return Reference{Source: src}, false
	}
	ref.Source = src
	p.loaded[name] = ref
	return ref, true
}

// remote checks an https reference without fetching it.
func (p *parser) remote(line int, field, src string) (Reference, bool) {
	u, err := url.Parse(src)
	msg := ""
	switch {
	case err != nil:
		msg = fmt.Sprintf("%q is not a valid URL", src)
	case u.Scheme != "https":
		msg = fmt.Sprintf("%q: only https:// URLs are allowed", src)
	case u.Host == "" || u.Hostname() == "":
		msg = fmt.Sprintf("%q has no host", src)
	case u.User != nil:
		msg = fmt.Sprintf("%q must not carry credentials; use a URL that needs none", u.Redacted())
	case strings.ContainsAny(src, " \t\r\n"):
		msg = fmt.Sprintf("%q contains white space; percent-encode it", src)
	}
	if msg != "" {
		p.errorf(line, field, "%s", msg)
		return Reference{Source: src}, false
	}
	return Reference{Source: src, Remote: true}, true
}

// refError is a reason a local reference is unusable, phrased to follow the
// file's name.
type refError struct {
	msg string
	err error
}

// readReference reads and sniffs one reference image.
func readReference(fsys fs.FS, name string) (Reference, *refError) {
	fi, err := fs.Stat(fsys, name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Reference{}, &refError{"does not exist (paths are relative to the spec file)", err}
	case err != nil:
		return Reference{}, &refError{fmt.Sprintf("cannot be read: %v", unwrapPath(err)), err}
	case fi.IsDir():
		return Reference{}, &refError{"is a directory, not an image", nil}
	case !fi.Mode().IsRegular():
		return Reference{}, &refError{"is not a regular file", nil}
	case fi.Size() > MaxReferenceSize:
		return Reference{}, &refError{fmt.Sprintf("is %s; the maximum is %s", mib(fi.Size()), mib(MaxReferenceSize)), nil}
	}
	f, err := fsys.Open(name)
	if err != nil {
		return Reference{}, &refError{fmt.Sprintf("cannot be read: %v", unwrapPath(err)), err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxReferenceSize+1))
	if err != nil {
		return Reference{}, &refError{fmt.Sprintf("cannot be read: %v", unwrapPath(err)), err}
	}
	if len(data) > MaxReferenceSize {
		return Reference{}, &refError{fmt.Sprintf("is larger than %s", mib(MaxReferenceSize)), nil}
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return Reference{}, &refError{"is not a PNG, JPEG or WebP image", err}
	}
	kind, ok := imageFormats[format]
	if !ok {
		return Reference{}, &refError{fmt.Sprintf("is a %s image; use PNG, JPEG or WebP", strings.ToUpper(format)), nil}
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return Reference{}, &refError{fmt.Sprintf("has no pixels (%dx%d)", cfg.Width, cfg.Height), nil}
	}
	sum := sha256.Sum256(data)
	return Reference{
		Path: name, Data: data, SHA256: hex.EncodeToString(sum[:]),
		ContentType: kind.contentType, Ext: kind.ext, Width: cfg.Width, Height: cfg.Height,
	}, nil
}

// unwrapPath drops the *fs.PathError wrapper, whose path would repeat the
// name the message already starts with.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func mib(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
