package store

import (
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
	"unicode/utf8"
)

// Info describes one stored object.
type Info struct {
	// Key is the object's key, as given to Put.
	Key string
	// Size is the object's length in bytes.
	Size int64
	// ContentType is the object's media type, set by Stat and left empty by
	// List. S3 stores the type given to Put; Dir derives it from the key's
	// extension, then from the content, so keys should carry the right
	// extension (the layout's keys do).
	ContentType string
	// ModTime is when the object was last written.
	ModTime time.Time
}

// kindError is a sentinel error that also matches a standard library
// sentinel under errors.Is, so callers may test for either.
type kindError struct {
	msg  string
	also error
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.also }

// ErrNotExist is wrapped by errors for objects that are not stored. It also
// matches io/fs.ErrNotExist.
var ErrNotExist error = &kindError{msg: "object does not exist", also: fs.ErrNotExist}

// ErrInvalidKey is wrapped by errors for keys that break the layout rules
// (see CheckKey). It also matches io/fs.ErrInvalid.
var ErrInvalidKey error = &kindError{msg: "invalid key", also: fs.ErrInvalid}

// maxKeyLen is S3's limit on an object key, in bytes.
const maxKeyLen = 1024

// defaultURLTTL is how long a presigned URL lives when the caller passes 0.
const defaultURLTTL = 15 * time.Minute

// CheckKey reports whether key is a valid object key: non-empty, at most
// 1024 bytes of UTF-8, slash-separated, relative, with no empty, "." or ".."
// segment, no backslash and no control character. The error wraps
// ErrInvalidKey. Both stores apply it, so a key that works on one works on
// the other.
func CheckKey(key string) error {
	if reason := keyProblem(key); reason != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, reason)
	}
	return nil
}

func keyProblem(key string) string {
	switch {
	case key == "":
		return "empty"
	case len(key) > maxKeyLen:
		return fmt.Sprintf("longer than %d bytes", maxKeyLen)
	case !utf8.ValidString(key):
		return "not valid UTF-8"
	case strings.HasPrefix(key, "/"):
		return "leading slash"
	case strings.Contains(key, `\`):
		return "backslash"
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return "control character"
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return "empty path segment"
		case ".", "..":
			return fmt.Sprintf("%q path segment", seg)
		}
	}
	return ""
}

// checkPrefix validates a List prefix: empty, or a valid key optionally
// followed by a slash.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := CheckKey(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

// typeByExt returns the media type of the key's extension, or "" if the
// extension is unknown.
func typeByExt(key string) string { return mime.TypeByExtension(path.Ext(key)) }

// contentTypeFor derives a media type from the key's extension, falling back
// to sniffing the first bytes of the content.
func contentTypeFor(key string, data []byte) string {
	if ct := typeByExt(key); ct != "" {
		return ct
	}
	return sniff(data)
}

func sniff(data []byte) string {
	if len(data) > 512 {
		data = data[:512]
	}
	return http.DetectContentType(data)
}
