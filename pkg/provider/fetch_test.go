package provider_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

var png1x1 = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82")

func TestFetch(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("Content-Type", "text/plain") // lies; must be sniffed
			w.Write(png1x1)
		case "/gone":
			http.Error(w, "expired", http.StatusGone)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	img, err := provider.Fetch(ctx, srv.Client(), "p", srv.URL+"/ok")
	if err != nil || img.ContentType != "image/png" || len(img.Data) != len(png1x1) {
		t.Fatalf("ok: %+v, %v", img.ContentType, err)
	}
	for _, path := range []string{"/gone", "/missing"} {
		_, err := provider.Fetch(ctx, srv.Client(), "p", srv.URL+path)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Class != provider.Transient || pe.Provider != "p" {
			t.Errorf("%s: %v; want a transient provider error", path, err)
		}
	}
	img, err = provider.Fetch(ctx, nil, "p", provider.DataURI(png1x1))
	if err != nil || img.ContentType != "image/png" {
		t.Errorf("data URI: %v %v", img.ContentType, err)
	}
	if _, err := provider.Fetch(ctx, nil, "p", "data:image/png,notbase64"); err == nil {
		t.Error("a non-base64 data URI decoded")
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"7", 7 * time.Second}, {"1.5", 1500 * time.Millisecond}, {"soon", 0},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
	} {
		h := http.Header{}
		if tc.v != "" {
			h.Set("Retry-After", tc.v)
		}
		if got := provider.RetryAfter(h, now); got != tc.want {
			t.Errorf("Retry-After %q = %s; want %s", tc.v, got, tc.want)
		}
	}
}
