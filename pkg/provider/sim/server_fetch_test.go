package sim

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

// A hosted provider cannot reach a private bucket: the simulator refuses,
// with Replicate's 422, every input URL whose host is not public, and never
// connects to it; nothing is created, so nothing is paid.
func TestServerRefusesUnreachableInputs(t *testing.T) {
	t.Parallel()
	e := newSrvEnv(t, ServerConfig{Models: oneModel("acme/edit", ModelBehavior{Profile: "kontext"}), OutputSize: 64})
	var hits atomic.Int64
	bucket := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Write(e.ref)
	}))
	t.Cleanup(bucket.Close)
	port := bucket.URL[strings.LastIndex(bucket.URL, ":")+1:]

	for _, tc := range []struct {
		name, field, url, kind string
	}{
		{"presigned URL of a loopback bucket", "input_image", bucket.URL + "/likeness/refs/ab.png?X-Amz-Signature=00", "loopback"},
		{"localhost", "input_image", "http://localhost:" + port + "/ref.png", "loopback"},
		{"a .localhost name", "input_image", "http://minio.localhost:" + port + "/ref.png", "loopback"},
		{"IPv6 loopback", "input_image", "http://[::1]:" + port + "/ref.png", "loopback"},
		{"RFC 1918 10/8", "input_image", "http://10.0.0.5:9000/bucket/ref.png", "private"},
		{"RFC 1918 172.16/12", "character_reference_image", "http://172.16.4.2/ref.png", "private"},
		{"RFC 1918 192.168/16", "input_images[0]", "http://192.168.1.20:9000/ref.png", "private"},
		{"unique local IPv6", "input_image", "http://[fd12:3456::1]:9000/ref.png", "private"},
		{"link-local metadata service", "input_image", "http://169.254.169.254/latest/meta-data", "link-local"},
		{"link-local IPv6", "input_image", "http://[fe80::1]/ref.png", "link-local"},
		{"carrier-grade NAT", "input_image", "http://100.64.1.1/ref.png", "reserved"},
		{"unspecified", "input_image", "http://0.0.0.0:" + port + "/ref.png", "unspecified"},
		{"IPv4-mapped private", "input_image", "http://[::ffff:10.1.2.3]/ref.png", "private"},
		{"cluster DNS name", "input_image", "http://minio:9000/bucket/ref.png", "does not reach the internet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := map[string]any{"prompt": "p"}
			switch tc.field {
			case "input_images[0]":
				in["input_images"] = []any{tc.url}
			default:
				in[tc.field] = tc.url
			}
			r := e.create("acme/edit", in)
			var p problem
			r.decode(t, &p)
			if r.code != http.StatusUnprocessableEntity || p.Title != "Input validation failed" ||
				!strings.Contains(p.Detail, "- "+tc.field+": ") || !strings.Contains(p.Detail, tc.kind) {
				t.Errorf("%d %s; want 422 naming %s and %q", r.code, r.body, tc.field, tc.kind)
			}
			if !strings.Contains(p.Detail, "data: URI") {
				t.Errorf("the detail does not say what works instead: %s", p.Detail)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the simulator fetched the private bucket %d times", n)
	}
	if st := e.srv.Stats(); st.Created != 0 || st.Invalid == 0 {
		t.Errorf("refused inputs created %d predictions (paid), %d invalid; want 0 paid", st.Created, st.Invalid)
	}
}

// Its own URLs stay fetchable: uploads (read from memory) and outputs of
// earlier predictions, by the host the client used or by localhost.
func TestServerFetchesItsOwnURLs(t *testing.T) {
	t.Parallel()
	e := newSrvEnv(t, ServerConfig{Models: oneModel("acme/edit", ModelBehavior{Profile: "kontext"}), OutputSize: 64})
	first := e.get(e.create("acme/edit", e.input()).prediction(t).ID) // polls give the output's URL
	out, _ := first.Output.(string)
	if first.Status != "succeeded" || !strings.HasPrefix(out, e.http.URL+"/files/outputs/") {
		t.Fatalf("first prediction: %+v", first)
	}
	viaLocalhost := strings.Replace(out, "127.0.0.1", "localhost", 1)
	for name, uri := range map[string]string{"own output": out, "own output via localhost": viaLocalhost} {
		r := e.create("acme/edit", e.input("input_image", uri), "Prefer: wait=10")
		if p := r.prediction(t); r.code != http.StatusCreated || p.Status != "succeeded" {
			t.Errorf("%s as input: %d %s", name, r.code, r.body)
		}
	}
}

func TestNonPublic(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"127.0.0.1": "loopback", "127.9.9.9": "loopback", "::1": "loopback",
		"10.1.2.3": "private", "172.31.255.1": "private", "192.168.0.1": "private", "fc00::1": "private",
		"169.254.1.1": "link-local", "fe80::abcd": "link-local", "ff02::1": "link-local",
		"0.0.0.0": "unspecified", "::": "unspecified", "224.0.0.251": "link-local", "239.1.1.1": "multicast",
		"100.127.0.1": "reserved", "192.0.2.7": "reserved", "198.18.0.1": "reserved", "255.255.255.255": "reserved",
		"2001:db8::1": "reserved", "::ffff:192.168.1.1": "private",
		"8.8.8.8": "", "172.32.0.1": "", "100.128.0.1": "", "2606:4700::1111": "",
	} {
		got := nonPublic(netip.MustParseAddr(addr))
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("nonPublic(%s) = %q, want %q", addr, got, want)
		}
	}
}
