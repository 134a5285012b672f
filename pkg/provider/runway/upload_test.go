package runway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
)

// noisyPNG is a PNG that compresses badly: over 5 MB as a data URI.
func noisyPNG(t *testing.T) []byte {
	t.Helper()
	const side = 1100
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	r := rand.New(rand.NewChaCha8([32]byte{7}))
	for i := range img.Pix {
		img.Pix[i] = uint8(r.Uint32())
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.NoCompression}
	if err := enc.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGenerateUploadsLargeReference(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	big := noisyPNG(t)
	req := request("gen4_image", nil)
	req.Reference = provider.Image{Data: big, ContentType: "image/png",
		URL: "https://127.0.0.1:9000/likeness/refs/big.png?X-Amz-Signature=1"} // private: not sent
	var pending []provider.Pending
	req.OnPending = func(p provider.Pending) { pending = append(pending, p) }
	res, err := c.Generate(context.Background(), req)
	if err != nil {
		t.Fatalf("Generate with a %.1f MB reference: %v", float64(len(big))/1e6, err)
	}
	ups := fake.Uploads()
	if len(ups) != 1 || !bytes.Equal(ups[0], big) {
		t.Fatalf("%d uploads; want the reference uploaded once, byte for byte", len(ups))
	}
	var uri string
	for _, r := range fake.Requests() {
		if r.Method == http.MethodPost && r.Path == "/v1/text_to_image" {
			var body struct {
				ReferenceImages []struct{ URI string } `json:"referenceImages"`
			}
			_ = json.Unmarshal(r.Body, &body)
			uri = body.ReferenceImages[0].URI
		}
	}
	if len(uri) < 9 || uri[:9] != "runway://" {
		t.Errorf("reference uri %.40q; want the upload's runway:// URI", uri)
	}

	// The redelivery resumes the task: nothing is uploaded again.
	req.OnPending = nil
	req.Resume = &pending[0]
	again, err := c.Generate(context.Background(), req)
	if err != nil || again.RequestID != res.RequestID {
		t.Fatalf("resume: %v", err)
	}
	if n := len(fake.Uploads()); n != 1 {
		t.Errorf("%d uploads after the resume; want still 1", n)
	}
	if n := fake.Calls(); n != 1 {
		t.Errorf("%d submits; want 1", n)
	}
}

func TestFakeRefusesUnknownUpload(t *testing.T) {
	t.Parallel()
	fake := providertest.NewRunway(t)
	body := `{"model":"gen4_image","promptText":"@mara plays","ratio":"1024:1024","seed":1,"referenceImages":[{"uri":"runway://uploads/never","tag":"mara"}]}`
	req, _ := http.NewRequest(http.MethodPost, fake.URL()+"/v1/text_to_image", bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+providertest.RunwayKey)
	req.Header.Set("X-Runway-Version", providertest.RunwayVersion)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d for a runway:// URI never uploaded; want 400", resp.StatusCode)
	}
}
