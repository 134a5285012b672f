package provider

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxOutputBytes caps a downloaded output image.
const MaxOutputBytes = 64 << 20

// Fetch downloads an output image at once (provider URLs expire in minutes
// to hours) and returns its bytes with the content type sniffed from them,
// never trusted from the server. It accepts https/http URLs and data: URIs.
// An expired or missing output (404, 410, 403 from object storage) is a
// Transient *Error for prov: the task is retried.
func Fetch(ctx context.Context, client *http.Client, prov, url string) (Image, error) {
	if strings.HasPrefix(url, "data:") {
		data, err := DecodeDataURI(url)
		if err != nil {
			return Image{}, &Error{Class: Transient, Provider: prov, Message: "output data URI: " + err.Error()}
		}
		return Image{Data: data, ContentType: http.DetectContentType(data)}, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Image{}, &Error{Class: Transient, Provider: prov, Message: "output URL", Err: err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Image{}, &Error{Class: Transient, Provider: prov, Message: "download output", Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("download output: %s", resp.Status)
		switch resp.StatusCode {
		case http.StatusNotFound, http.StatusGone, http.StatusForbidden:
			msg = fmt.Sprintf("output URL expired or missing (%s)", resp.Status)
		}
		return Image{}, &Error{Class: Transient, Provider: prov, Status: resp.StatusCode, Message: msg}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxOutputBytes+1))
	if err != nil {
		return Image{}, &Error{Class: Transient, Provider: prov, Message: "download output", Err: err}
	}
	if len(data) > MaxOutputBytes {
		return Image{}, &Error{Class: Transient, Provider: prov, Message: fmt.Sprintf("output larger than %d MiB", MaxOutputBytes>>20)}
	}
	return Image{Data: data, ContentType: http.DetectContentType(data)}, nil
}

// DecodeDataURI decodes a base64 data: URI.
func DecodeDataURI(uri string) ([]byte, error) {
	meta, payload, ok := strings.Cut(strings.TrimPrefix(uri, "data:"), ",")
	if !ok || !strings.HasSuffix(meta, ";base64") {
		return nil, fmt.Errorf("not a base64 data URI")
	}
	data, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return nil, fmt.Errorf("bad base64: %w", err)
	}
	return data, nil
}

// DataURI encodes an image as a data: URI with its sniffed content type.
func DataURI(data []byte) string {
	var b bytes.Buffer
	b.WriteString("data:")
	b.WriteString(http.DetectContentType(data))
	b.WriteString(";base64,")
	b.WriteString(base64.StdEncoding.EncodeToString(data))
	return b.String()
}

// RetryAfter parses a Retry-After header: delay-seconds or an HTTP date.
// It returns zero when the header is absent or unparsable.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs >= 0 {
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// BaseURL applies an adapter's default base URL and checks it: an absolute
// http(s) URL, returned without a trailing slash. prov names the adapter in
// the error.
func BaseURL(prov, raw, def string) (string, error) {
	if raw == "" {
		raw = def
	}
	raw = strings.TrimRight(raw, "/")
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s: BaseURL %q is not an http(s) URL", prov, raw)
	}
	return raw, nil
}
