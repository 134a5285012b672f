package sim

import (
	"context"
	"crypto/sha256"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// Input URLs: what the simulator fetches when a create names an image by
// URL, and what it refuses.
//
// A real hosted provider fetches input URLs from the internet, so it cannot
// reach a bucket on a private network, a loopback address or a link-local
// one: a worker that sends such a URL (a presigned URL of a MinIO in the
// same cluster, say) gets its prediction refused, in production. The
// simulator runs on loopback next to that bucket and could fetch it; it
// refuses instead, as Replicate does, so the mistake shows up in tests and
// benchmarks rather than in production. It also never reaches the internet.
// What it does fetch:
//
//   - data: URIs, decoded in place;
//   - its own uploads (urls.get of POST /v1/files, /files/uploads/{id}, or
//     /v1/files/{id}/download), read from memory;
//   - any other URL on its own address (an output of an earlier prediction,
//     say), fetched over loopback.
//
// Anything else is answered 422 "Input validation failed" with a detail
// naming the field and why the host is unreachable, which the Replicate
// adapter reports as an INPUT error (bad input: no retry).

// resolveRef decodes a reference given as a data: URI or a URL on this
// server. Files uploaded to this server (urls.get) are read from memory.
func (s *Server) resolveRef(r *http.Request, field, uri string) (image.Image, *problem) {
	if strings.HasPrefix(uri, "data:") {
		data, err := provider.DecodeDataURI(uri)
		if err != nil {
			return nil, invalidInput(field, "data URI: %v", err)
		}
		img, err := s.decodeRef(sha256.Sum256(data), data)
		if err != nil {
			return nil, invalidInput(field, "%v", err)
		}
		return img, nil
	}
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, invalidInput(field, "must be a data: URI or an http(s) URL")
	}
	if !ownURL(r, u) {
		return nil, invalidInput(field, "%s", unreachable(u))
	}
	if id, ok := uploadID(u.Path); ok {
		f := s.upload(id)
		if f == nil {
			return nil, invalidInput(field, "file %s not found", id)
		}
		img, err := s.decodeRef(f.sha256, f.data)
		if err != nil {
			return nil, invalidInput(field, "%v", err)
		}
		return img, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	data, err := s.fetchRef(ctx, u.String())
	if err != nil {
		return nil, invalidInput(field, "%v", err)
	}
	img, err := s.decodeRef(sha256.Sum256(data), data)
	if err != nil {
		return nil, invalidInput(field, "%v", err)
	}
	return img, nil
}

// ownURL reports whether u points at this server: the host the client
// reached it by (the request's Host), or the address the request arrived
// on (localhost counting as loopback).
func ownURL(r *http.Request, u *url.URL) bool {
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	lap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return false
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if p, err := strconv.Atoi(port); err != nil || p != int(lap.Port()) {
		return false
	}
	la := lap.Addr().Unmap()
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return la.IsLoopback()
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	return ip == la || (ip.IsLoopback() && la.IsLoopback())
}

// unreachable says why a hosted provider could not fetch u: its host is
// not public, or (the simulator never reaching the internet) it is
// somewhere else.
func unreachable(u *url.URL) string {
	host := u.Hostname()
	kind := ""
	if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		kind = "loopback"
	} else if ip, err := netip.ParseAddr(host); err == nil {
		kind = nonPublic(ip)
	}
	if kind != "" {
		return fmt.Sprintf("cannot fetch %s://%s/...: %s is a %s address, which a hosted provider cannot reach; send the image as a data: URI or upload it with POST /v1/files",
			u.Scheme, u.Host, host, kind)
	}
	return fmt.Sprintf("cannot fetch %s://%s/...: the simulator fetches no URL but its own (data: URIs and POST /v1/files uploads work), and does not reach the internet",
		u.Scheme, u.Host)
}

// specialPrefixes are IANA special-purpose blocks, not reachable on the
// public internet, that netip's predicates do not cover.
var specialPrefixes = [...]netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (carrier-grade NAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
}

// nonPublic names the kind of a non-public address, or returns "" for a
// public one.
func nonPublic(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private (RFC 1918 or unique local)"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return "link-local"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsMulticast():
		return "multicast"
	}
	for _, p := range specialPrefixes {
		if p.Contains(ip) {
			return "reserved (non-public)"
		}
	}
	return ""
}

// uploadID extracts a file id from this server's upload paths.
func uploadID(path string) (string, bool) {
	if id, ok := strings.CutPrefix(path, "/files/uploads/"); ok && id != "" && !strings.Contains(id, "/") {
		return id, true
	}
	if rest, ok := strings.CutPrefix(path, "/v1/files/"); ok {
		if id, ok := strings.CutSuffix(rest, "/download"); ok && id != "" && !strings.Contains(id, "/") {
			return id, true
		}
	}
	return "", false
}

// newFetchClient returns an HTTP client that can only connect to loopback
// addresses, whatever the URL's host resolves to or redirects to: the
// server fetches only from itself.
func newFetchClient() *http.Client {
	dialer := &net.Dialer{
		Timeout: 5 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("sim: refusing to connect to non-loopback address %s", address)
			}
			return nil
		},
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil, // never through a proxy: loopback only
			DialContext:         dialer.DialContext,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
		// A redirect may lead anywhere; the server fetches only its own URLs.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetchRef downloads a reference image.
func (s *Server) fetchRef(ctx context.Context, uri string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.fetch.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: %s", uri, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRefBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if len(data) > maxRefBytes {
		return nil, fmt.Errorf("fetch: reference larger than %d MiB", maxRefBytes>>20)
	}
	return data, nil
}
