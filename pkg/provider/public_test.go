package provider_test

import (
	"testing"

	"github.com/likeness-run/likeness/pkg/provider"
)

func TestPublicURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"https://files.example.com/likeness/refs/a.png?X-Amz-Signature=x", true},
		{"http://s3.eu-west-1.amazonaws.com/b/k", true},
		{"https://8.8.8.8/k", true},
		{"https://[2606:4700::1111]/k", true},
		{"http://127.0.0.1:9000/likeness/refs/a.png", false},
		{"http://localhost:9000/k", false},
		{"http://api.localhost/k", false},
		{"http://minio:9000/likeness/k", false}, // compose's service name
		{"http://minio.likeness.svc.cluster.local:9000/k", false},
		{"http://bucket.internal/k", false},
		{"http://10.0.3.7/k", false},
		{"http://172.16.0.1/k", false},
		{"http://192.168.1.20/k", false},
		{"http://100.64.1.1/k", false}, // carrier-grade NAT
		{"http://169.254.169.254/latest/meta-data", false},
		{"http://0.0.0.0:9000/k", false},
		{"http://[::1]:9000/k", false},
		{"http://[fd12:3456::1]/k", false}, // ULA
		{"http://[fe80::1%25eth0]/k", false},
		{"http://[::ffff:127.0.0.1]/k", false}, // IPv4-mapped loopback
		{"http://192.0.2.10/k", false},         // documentation
		{"file:///var/lib/likeness/refs/a.png", false},
		{"data:image/png;base64,AAAA", false},
		{"s3://likeness/refs/a.png", false},
		{"", false},
	} {
		if got := provider.PublicURL(tc.url); got != tc.want {
			t.Errorf("PublicURL(%q) = %v, want %v", tc.url, got, tc.want)
		}
	}
}

func TestImageFetchURL(t *testing.T) {
	t.Parallel()
	const public = "https://files.example.com/likeness/refs/a.png"
	const private = "http://127.0.0.1:9000/likeness/refs/a.png"
	for _, tc := range []struct {
		name string
		img  provider.Image
		want string
	}{
		{"public URL with bytes", provider.Image{Data: png1x1, URL: public}, public},
		{"private URL with bytes: send the bytes", provider.Image{Data: png1x1, URL: private}, ""},
		{"bytes only", provider.Image{Data: png1x1}, ""},
		{"private URL without bytes: all there is", provider.Image{URL: private}, private},
		{"nothing", provider.Image{}, ""},
	} {
		if got := tc.img.FetchURL(); got != tc.want {
			t.Errorf("%s: FetchURL() = %q, want %q", tc.name, got, tc.want)
		}
	}
}
