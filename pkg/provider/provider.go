// Package provider is the provider-neutral side of image generation: the
// Request a worker sends, the Result it gets back, the error vocabulary that
// steers retries, and the registry of models a spec may name.
//
// In the task lifecycle (see design.md) the worker builds a Request from a task
// payload, hands it to the adapter registered for the model's provider
// (pkg/provider/<name>), and maps the adapter's error onto the queue with
// ClassOf: TRANSIENT errors back off, RATE errors wait exactly what the
// provider asked, INPUT and BILLING errors stop, SAFETY errors retry with a new
// seed within the spec's allowance. Adapters live in sub-packages and return
// concrete clients; this package imports none of them.
package provider

import (
	"context"
	"time"
)

// Image is an image passed to or returned by a provider.
type Image struct {
	// Data holds the encoded bytes (PNG, JPEG or WebP).
	Data []byte
	// ContentType is the sniffed MIME type of Data, e.g. "image/png".
	ContentType string
	// URL, when set, is a URL the provider can fetch the same bytes from
	// (a presigned object-store URL). Adapters prefer it for large images.
	URL string
}

// Request is one generation: one prompt, one character reference, one seed.
type Request struct {
	// Model is the model name within its provider, e.g.
	// "black-forest-labs/flux-kontext-pro" or, for the simulator, "kontext".
	Model string
	// Prompt is the text instruction.
	Prompt string
	// Character is the character's id; adapters that name references in the
	// prompt (Runway's @tag) use it as the tag.
	Character string
	// Reference is the character reference image.
	Reference Image
	// Image and Mask, when Image is set, ask for an inpainting edit of Image.
	// The mask uses one convention everywhere in likeness: white (or any
	// non-black) pixels are repainted, black pixels are kept. Adapters
	// convert it to their provider's convention (OpenAI: transparent =
	// edit; Ideogram: black = edit).
	Image, Mask *Image
	// Seed is the derived per-attempt seed, always in [0, 2147483647].
	Seed int64
	// Width and Height, when non-zero, are the output size the caller expects.
	Width, Height int
	// Params are the model parameters from the spec, already validated
	// against the registry. For a model offered both on Replicate and on its
	// own provider's API, the registry uses the same names and values for
	// both (Replicate's), and the direct adapter maps them to its wire form.
	Params map[string]any
	// Resume, when set, is a request an earlier delivery of the same task
	// attempt created (and so paid for): an asynchronous adapter polls it,
	// or downloads its output again, instead of creating a new one. When
	// the provider no longer has it (unknown id, output expired or
	// removed), the adapter returns an error matching ErrGone, and the
	// worker creates a new request. Synchronous adapters ignore it.
	Resume *Pending
	// OnPending, when set, is called by an asynchronous adapter once the
	// provider has accepted a new request and before it waits on it, so
	// the worker can record the request for a redelivery to resume. It is
	// called at most once per Generate, never for a resumed request, and
	// must return quickly.
	OnPending func(Pending)
}

// Pending identifies an asynchronous provider request that was accepted:
// enough to poll it again from another process.
type Pending struct {
	// Provider is the adapter name ("replicate", "bfl", "runway").
	Provider string `json:"provider"`
	// ID is the provider's id for the request (Replicate prediction id,
	// BFL request id, Runway task id).
	ID string `json:"id"`
	// PollURL is the URL the provider gave for reading the request's state
	// (Replicate urls.get, BFL polling_url), when it gives one. Adapters
	// check that it points at their own API before polling it.
	PollURL string `json:"poll_url,omitempty"`
	// CreatedAt is when the provider accepted the request.
	CreatedAt time.Time `json:"created_at"`
}

// Result is what a successful generation produced.
type Result struct {
	// Image is the output, downloaded at once and stored as returned.
	Image Image
	// RequestID is the provider's id for the request (prediction id, task id).
	RequestID string
	// CostUSD is the provider's price for this output.
	CostUSD float64
	// Latency is the wall time spent in the provider, from submit to output.
	Latency time.Duration
	// RevisedPrompt is the prompt the provider actually used, when it says.
	RevisedPrompt string
	// Seed is the seed the provider reports having used, when it says.
	Seed int64
	// Logs is what the provider logged for the request, when it says
	// (Replicate prediction logs), trimmed to a few KiB.
	Logs string
}

// Generator is what every adapter implements: one call, one output image.
// Implementations must honour ctx for every wait, must not retry on their own
// (the queue owns retries), and must return errors classified with this
// package's vocabulary.
type Generator interface {
	Generate(ctx context.Context, req Request) (*Result, error)
}
