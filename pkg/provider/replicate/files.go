package replicate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// uploadMargin is how long before its expiry an uploaded file is replaced,
// so a prediction that waits in "starting" can still read it.
const uploadMargin = 10 * time.Minute

// upload is one POST /files, shared by every request for the same bytes.
type upload struct {
	done    chan struct{} // closed when url/expires/err are set
	url     string
	expires time.Time // zero when Replicate did not say
	err     error
}

func (u *upload) fresh(now time.Time) bool {
	return u.err == nil && (u.expires.IsZero() || now.Add(uploadMargin).Before(u.expires))
}

// fileInput returns the input value for an image: its URL when that is an
// http(s) URL Replicate could fetch (provider.Image.FetchURL: a public host,
// or no bytes to send instead), a data: URL when it is at most
// MaxDataURIBytes, else the urls.get of an upload (once per process per
// content). A private bucket URL is never sent.
func (c *Client) fileInput(ctx context.Context, img provider.Image, what string) (string, error) {
	if u := img.FetchURL(); strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
		return u, nil
	}
	if len(img.Data) == 0 {
		return "", c.errorf(provider.Input, "no %s image", what)
	}
	if ct := http.DetectContentType(img.Data); !strings.HasPrefix(ct, "image/") {
		return "", c.errorf(provider.Input, "%s is not an image (%s)", what, ct)
	}
	if len(img.Data) <= MaxDataURIBytes {
		return provider.DataURI(img.Data), nil
	}
	return c.upload(ctx, img.Data)
}

// upload returns the urls.get of data uploaded to /files, uploading it only
// when no fresh upload of the same bytes exists. Concurrent callers with the
// same bytes wait for one upload; a failed upload is forgotten so the next
// attempt tries again.
func (c *Client) upload(ctx context.Context, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:])
	for {
		c.mu.Lock()
		u, ok := c.uploads[key]
		if !ok {
			u = &upload{done: make(chan struct{})}
			c.uploads[key] = u
			c.mu.Unlock()
			u.url, u.expires, u.err = c.postFile(ctx, data, key)
			if u.err != nil {
				c.forget(key, u)
			}
			close(u.done)
			return u.url, u.err
		}
		c.mu.Unlock()
		select {
		case <-u.done:
		case <-ctx.Done():
			return "", &provider.Error{Class: provider.Transient, Provider: ProviderName, Message: "waiting for the reference upload", Err: ctx.Err()}
		}
		if u.err != nil {
			return "", u.err
		}
		if u.fresh(time.Now()) {
			return u.url, nil
		}
		c.forget(key, u) // about to expire: upload again
	}
}

// forget drops u from the cache if it is still the entry for key.
func (c *Client) forget(key string, u *upload) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.uploads[key] == u {
		delete(c.uploads, key)
	}
}

// fileObject is the part of POST /files's answer the adapter reads.
type fileObject struct {
	ID        string `json:"id"`
	ExpiresAt string `json:"expires_at"`
	URLs      struct {
		Get string `json:"get"`
	} `json:"urls"`
}

// postFile uploads data as multipart/form-data: a "content" file part with
// a filename and the sniffed image content type, and "type" and "filename"
// fields.
func (c *Client) postFile(ctx context.Context, data []byte, key string) (string, time.Time, error) {
	ct := http.DetectContentType(data)
	name := "reference-" + key[:16] + extension(ct)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="content"; filename=%q`, name))
	h.Set("Content-Type", ct)
	part, err := mw.CreatePart(h)
	if err == nil {
		_, err = part.Write(data)
	}
	if err == nil {
		err = mw.WriteField("type", ct)
	}
	if err == nil {
		err = mw.WriteField("filename", name)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return "", time.Time{}, c.errorf(provider.Input, "encode upload: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint("files"), &buf)
	if err != nil {
		return "", time.Time{}, c.errorf(provider.Input, "upload request: %v", err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.do(req)
	if err != nil {
		return "", time.Time{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Message: "upload reference", Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return "", time.Time{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode, Message: "upload reference: reading the answer", Err: err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", time.Time{}, c.httpError(resp.StatusCode, resp.Header, body, "upload reference")
	}
	var f fileObject
	if err := json.Unmarshal(body, &f); err != nil || f.URLs.Get == "" {
		return "", time.Time{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode,
			Message: "upload reference: malformed file JSON: " + truncate(compact(string(body)), 120), Err: err}
	}
	expires, _ := time.Parse(time.RFC3339Nano, f.ExpiresAt)
	return f.URLs.Get, expires, nil
}

// extension returns a filename extension for an image content type.
func extension(ct string) string {
	switch ct {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	case "image/gif":
		return ".gif"
	}
	return ""
}
