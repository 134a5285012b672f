package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
)

// TestReferencesTravelByURLOnlyFromAPublicBucket runs a Replicate model in
// distributed mode against the real MinIO: the reference reaches the
// provider as a presigned URL only when LIKENESS_S3_PUBLIC_ENDPOINT says the
// bucket is reachable from the internet, and then on that endpoint; else as
// the image's bytes, never as a URL into the private bucket.
func TestReferencesTravelByURLOnlyFromAPublicBucket(t *testing.T) {
	t.Parallel()
	minio := testenv.S3(t).Endpoint
	for _, tc := range []struct {
		name, public, wantHost string
	}{
		{"private bucket", "", ""},
		{"public bucket", "https://files.example.com", "files.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t)
			fake := providertest.NewReplicate(t)
			env := append(append([]string(nil), c.env...),
				"REPLICATE_API_TOKEN="+providertest.ReplicateToken,
				"LIKENESS_REPLICATE_BASE_URL="+fake.URL(),
				"LIKENESS_S3_PUBLIC_ENDPOINT="+tc.public)
			// The fake renders 4:3 images; ask for that so the output check passes.
			path := writeSpec(t, strings.Replace(modelsSpec("public-endpoint", []string{"replicate:black-forest-labs/flux-kontext-pro"}, ""),
				`"replicate:black-forest-labs/flux-kontext-pro"}`, `"replicate:black-forest-labs/flux-kontext-pro", params: {aspect_ratio: "4:3"}}`, 1))
			code, stdout, stderr := likeness(t, env, "run", path, "--no-progress")
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
			}
			var refs []string
			for _, r := range fake.Requests() {
				if strings.Contains(string(r.Body), minio) {
					t.Errorf("%s %s carries a URL into the private bucket (%s)", r.Method, r.Path, minio)
				}
				if r.Method != http.MethodPost || !strings.HasSuffix(r.Path, "/predictions") {
					continue
				}
				var body struct {
					Input struct {
						InputImage string `json:"input_image"`
					} `json:"input"`
				}
				if err := json.Unmarshal(r.Body, &body); err != nil {
					t.Fatal(err)
				}
				refs = append(refs, body.Input.InputImage)
			}
			if len(refs) != 1 {
				t.Fatalf("%d predictions created; want 1", len(refs))
			}
			if tc.wantHost == "" {
				if !strings.HasPrefix(refs[0], "data:image/png;base64,") {
					t.Errorf("input_image %.60q; want the reference's bytes as a data URI", refs[0])
				}
				return
			}
			u, err := url.Parse(refs[0])
			if err != nil || u.Scheme != "https" || u.Host != tc.wantHost || u.Query().Get("X-Amz-Signature") == "" {
				t.Errorf("input_image %.120q; want a presigned URL on %s", refs[0], tc.wantHost)
			}
		})
	}
}
