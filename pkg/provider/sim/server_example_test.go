package sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/sim"
)

// The simulator speaks Replicate's HTTP API, so a Replicate client pointed
// at http://127.0.0.1:PORT/v1 works unchanged. `likeness sim-provider`
// serves the same handler.
func ExampleNewServer() {
	srv, err := sim.NewServer(sim.ServerConfig{
		Models: map[string]sim.ModelBehavior{
			"black-forest-labs/flux-kontext-pro": {Profile: "kontext"}, // no latency, no failures
		},
		Token:      "r8_example",
		RateLimit:  600, // creates per minute, like a Replicate account
		OutputSize: 256,
	})
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	var ref bytes.Buffer
	_ = png.Encode(&ref, image.NewGray(image.Rect(0, 0, 64, 64)))
	body, _ := json.Marshal(map[string]any{"input": map[string]any{
		"prompt":      "she is playing the piano",
		"input_image": provider.DataURI(ref.Bytes()),
	}})
	req, _ := http.NewRequest("POST", ts.URL+"/v1/models/black-forest-labs/flux-kontext-pro/predictions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer r8_example")
	req.Header.Set("Prefer", "wait=10")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var p struct {
		Status string `json:"status"`
		Output string `json:"output"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&p)
	fmt.Println(resp.StatusCode, p.Status, strings.HasPrefix(p.Output, "data:image/png;base64,"))
	fmt.Println("predictions created:", srv.Stats().Created)
	// Output:
	// 201 succeeded true
	// predictions created: 1
}
