package provider

import (
	"net/netip"
	"net/url"
	"strings"
)

// nonPublic lists the IP ranges a hosted provider cannot reach across the
// internet, beyond what netip's predicates cover (loopback, RFC 1918 and
// unique-local, link-local, multicast, unspecified).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
}

// localSuffixes are DNS suffixes that never resolve on the public internet.
var localSuffixes = []string{".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain", ".intranet", ".corp", ".private"}

// PublicHost reports whether host (a URL's Hostname: a name or an IP
// literal, without port or brackets) could be reached by a hosted provider
// across the internet. IP literals must be globally routable: loopback,
// private (RFC 1918), carrier-grade NAT, link-local, unique-local (ULA),
// multicast, unspecified, documentation and reserved ranges are not. Names
// must have a dot and must not be local ("localhost", "*.local",
// "*.internal", ...): "minio" (compose's service name) is not public.
//
// Names are not resolved, so a public-looking name that resolves to a
// private address passes; the check catches the configurations that are
// certainly wrong without a DNS lookup on the request path.
func PublicHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return false
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		addr = addr.Unmap()
		if addr.Zone() != "" || addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() ||
			addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() {
			return false
		}
		for _, p := range nonPublic {
			if p.Contains(addr) {
				return false
			}
		}
		return true
	}
	if host == "localhost" || !strings.Contains(host, ".") {
		return false
	}
	for _, s := range localSuffixes {
		if strings.HasSuffix(host, s) {
			return false
		}
	}
	return true
}

// PublicURL reports whether raw is an http(s) URL on a public host (see
// PublicHost), one a hosted provider could fetch.
func PublicURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return PublicHost(u.Hostname())
}

// FetchURL returns the URL an adapter should give the provider in place of
// img's bytes, or "" when it should send the bytes (inline, or through the
// provider's own upload). It is img.URL when that is an http(s) URL on a
// public host, and also when img has no bytes at all: the URL is then all
// there is, and the provider says whether it can fetch it.
//
// So a URL into a private bucket (127.0.0.1:9000, compose's minio:9000) is
// never preferred over bytes: a hosted provider cannot fetch it, and sending
// it would hand a live bucket URL to a third party for nothing.
func (img Image) FetchURL() string {
	if img.URL == "" {
		return ""
	}
	if len(img.Data) == 0 || PublicURL(img.URL) {
		return img.URL
	}
	return ""
}
