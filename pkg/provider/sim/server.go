package sim

import (
	"container/heap"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// ServerConfig configures a Server. The zero value serves DefaultModels()
// with no limits and accepts any token.
type ServerConfig struct {
	// Models maps "owner/name", as in POST /v1/models/{owner}/{name}/predictions,
	// to how the model behaves. Default (empty): DefaultModels().
	Models map[string]ModelBehavior
	// RateLimit caps accepted creates per RateWindow across all clients
	// (exact sliding window; see Server). 0 means unlimited.
	RateLimit int
	// RateWindow is the rate-limit window. Default: 1 minute.
	RateWindow time.Duration
	// Concurrency caps predictions in flight across all clients; a create
	// over it is answered 429. 0 means unlimited.
	Concurrency int
	// Token is the bearer token every /v1 request must carry. "" accepts
	// any request, with or without a token.
	Token string
	// LatencyScale multiplies every latency. Default (0): 1.
	LatencyScale float64
	// Seed seeds the PRNG that draws each prediction's fate and random
	// seed, so the same sequence of creates gets the same outcomes.
	Seed int64
	// OutputSize is the long side of outputs in pixels when the input sets
	// no "size" (64..2048). Default: DefaultSize (512); benchmarks use 256.
	OutputSize int
	// SyncOutputURL makes a create answered under Prefer: wait carry the
	// output URL instead of a data: URI.
	SyncOutputURL bool
	// Retention is how long a terminal prediction keeps its input, output
	// and logs. Default: 1 hour, as Replicate does for API predictions.
	Retention time.Duration
	// MaxPredictions bounds the predictions kept in memory; beyond it the
	// oldest are forgotten (polls answer 404). Default: 100,000.
	MaxPredictions int
	// Now is the clock. Default: time.Now. Only Prefer: wait sleeps in
	// real time; everything else follows Now.
	Now func() time.Time
	// Logger receives throttling (debug) and rendering failures (error).
	// Default: discard.
	Logger *slog.Logger
}

// Server is the simulator served over Replicate's HTTP API (`likeness
// sim-provider`): the same renderer as Client, behind the endpoints, status
// codes and bodies shared/providers.md documents for Replicate, so the real
// replicate adapter can be tested and benchmarked end to end on loopback.
//
// Routes, relative to the handler's root (the adapter's base URL is
// http://HOST:PORT/v1):
//
//	POST   /v1/models/{owner}/{name}/predictions  create (official-model route)
//	POST   /v1/predictions                        create; body "version" is owner/name[:hash]
//	GET    /v1/predictions                        list, newest first (created_after, created_before, cursor)
//	GET    /v1/predictions/{id}                   poll (counted in Stats.Polls)
//	POST   /v1/predictions/{id}/cancel            cancel
//	POST   /v1/files                              upload (multipart "content"); urls.get is /files/uploads/{id}
//	GET    /v1/files/{id}, /v1/files/{id}/download, DELETE /v1/files/{id}
//	GET    /files/uploads/{id}                    uploaded bytes (no auth, like replicate.delivery)
//	GET    /files/outputs/{id}.{png|jpg}          output image (no auth), rendered on request
//	GET    /stats                                 Stats as JSON, plus derived fields (no auth)
//	POST   /stats/reset                           zero the counters and the accept log (no auth)
//	POST   /admin/outage?for=30s                  answer every /v1 and /files request 503 for 30 s (no auth; GET shows it)
//	GET    /healthz                               "ok"
//
// Every /v1 route needs "Authorization: Bearer <ServerConfig.Token>"
// unless Token is empty.
//
// Input images given by URL are fetched only from this server itself (its
// uploads, its outputs); any other host is refused 422 as unreachable, as
// a hosted provider refuses a private bucket's URL (server_fetch.go).
//
// Paid predictions: Replicate bills every prediction it creates, whatever
// its end (succeeded, blank, moderated, canceled); a create answered 429,
// 4xx or 503, or refused during an outage, creates nothing and costs
// nothing. Stats.Created counts exactly the paid predictions (GET /stats
// also reports it as paid_predictions).
//
// Lifecycle: a prediction's fate is drawn when it is created (latency, moderated,
// blank, slow) and its state is computed from the clock at each request: it
// is "starting" for the first fifth of its latency, then "processing", then
// terminal ("succeeded" or "failed") once the latency has elapsed, whether or
// not anyone polls. Nothing runs in the background. A Cancel-After deadline
// that falls before the end makes it "canceled" (or "aborted" if it had not
// started) at the deadline. Terminal predictions keep their output for
// ServerConfig.Retention, then answer output null and data_removed true.
// Outputs are rendered when fetched, so creates and polls stay cheap.
//
// With "Prefer: wait[=N]" the create is held until the prediction is
// terminal or N seconds (60 for a bare "wait") have passed; a terminal
// answer is 201 with the output as a data: URI (the URL under /files when
// ServerConfig.SyncOutputURL is set), otherwise 202 with status starting or
// processing and a Location header. Polls always give the URL. Both forms
// decode with provider.Fetch.
//
// Limits: every authenticated create is first checked against RateLimit with an
// exact sliding-window log: it is answered 429 when RateLimit creates were
// accepted in the RateWindow before it (less than RateWindow earlier).
// Every create not answered 429 is "accepted" by the limiter and recorded,
// including creates then answered 404, 422 or a simulated 5xx (Replicate's
// gateway counts requests, not predictions). A valid create is then checked
// against Concurrency: it is answered 429 while Concurrency predictions are
// in flight (created and not yet terminal); such a create is not recorded
// and uses no rate budget. Both 429s carry Replicate's body
// {"detail":"Request was throttled. Your rate limit resets in ~Ns.","status":429,"retry_after":N}
// with N the whole seconds (at least 1) until a create would be admitted,
// the same N in a Retry-After header, and "X-Sim-Throttle: rate" or
// "concurrency".
//
// Each model may have limits of its own (ModelBehavior.RateLimit and
// Concurrency), so one server can stand in for several providers: after the
// server's rate limit, a create is checked against its model's rate limit
// (same sliding window, over the model's accepted creates); after the
// server's concurrency cap, against its model's cap. A model's
// ThrottleRate then answers a share of the remaining creates 429 with
// retry_after 1 at random. The X-Sim-Throttle header says which:
// "model-rate", "model-concurrency" or "random". Stats.Models counts each
// model separately, with its own accept log for MaxInWindow and
// OverLimitWindows.
//
// Server is safe for concurrent use. All state sits behind one mutex held
// for microseconds; nothing runs in the background, so thousands of
// predictions cost memory only.
type Server struct {
	cfg           ServerConfig
	models        map[string]ModelBehavior
	renderAspects []string // the aspect ratios Render takes as they are
	epoch         time.Time
	fetch         *http.Client
	png           png.Encoder
	refs          refCache
	mux           *http.ServeMux

	mu    sync.Mutex
	rng   *rand.Rand
	salt  uint64
	ids   uint64
	preds map[string]*prediction
	// inputs maps each created prediction's createRequest.inputKey to its
	// id and creation time, for Stats.RepeatedCreates.
	inputs  map[[32]byte]firstCreate
	order   []*prediction // creation order, for MaxPredictions
	flight  flight        // in-flight predictions by end time
	files   map[string]*upload
	fileSeq []*upload // upload order, for the byte cap
	fileSz  int64
	st      Stats // counters; InFlight, Windows and accepts are filled by Stats()
	accepts acceptLog

	perModel map[string]*modelState // by "owner/name", created at a model's first create
	// throttleRNG draws ModelBehavior.ThrottleRate; a stream of its own so
	// that models without random throttling see the same fates as before.
	throttleRNG *rand.Rand

	// outageFrom and outageUntil bound the current outage (zero: none);
	// see server_outage.go.
	outageFrom, outageUntil time.Time
}

// outcome is a prediction's fate, drawn at creation.
type outcome uint8

const (
	outcomeSuccess outcome = iota
	outcomeModerated
	outcomeBlank
)

// moderationError is the error text of a moderated prediction; it names
// both NSFW and "sensitive"/E005 so every safety heuristic matches it.
const moderationError = "NSFW content detected: the input or output was flagged as sensitive (E005). Try a different prompt or seed."

// prediction is one created prediction. Every field but canceledAt and
// heapIdx is fixed at creation.
type prediction struct {
	id       string
	model    string
	behavior ModelBehavior
	input    []byte
	prompt   string
	seed     int64
	aspect   string
	size     int
	ext      string
	ref      image.Image // nil for tags
	tags     []string
	outcome  outcome
	created  time.Time
	started  time.Time // created + latency/5
	end      time.Time // when it turns terminal: finish, or the deadline if earlier
	deadline time.Time // Cancel-After, zero without
	cut      bool      // the deadline ended it

	// edit and editMask are an inpainting request's image and mask (the
	// mask in likeness's convention, white = repaint); nil otherwise.
	edit, editMask image.Image

	canceledAt time.Time // user cancel before end
	heapIdx    int       // index in Server.flight, -1 when not in flight
}

// state returns the status at now and, when terminal, when it ended.
func (p *prediction) state(now time.Time) (status string, completed time.Time) {
	switch {
	case !p.canceledAt.IsZero():
		return "canceled", p.canceledAt
	case !now.Before(p.end):
		switch {
		case p.cut && p.end.Before(p.started):
			return "aborted", p.end
		case p.cut:
			return "canceled", p.end
		case p.outcome == outcomeModerated:
			return "failed", p.end
		}
		return "succeeded", p.end
	case !now.Before(p.started):
		return "processing", time.Time{}
	}
	return "starting", time.Time{}
}

func isTerminal(status string) bool {
	switch status {
	case "succeeded", "failed", "canceled", "aborted":
		return true
	}
	return false
}

// NewServer returns a Server for cfg, with defaults applied to a copy.
func NewServer(cfg ServerConfig) (*Server, error) {
	models := cfg.Models
	if len(models) == 0 {
		models = DefaultModels()
	}
	cfg.Models = make(map[string]ModelBehavior, len(models))
	for name, b := range models {
		owner, model, ok := strings.Cut(name, "/")
		if !ok || owner == "" || model == "" || strings.Contains(model, "/") {
			return nil, fmt.Errorf("sim server: model %q is not owner/name", name)
		}
		if err := b.validate(); err != nil {
			return nil, fmt.Errorf("sim server: model %s: %w", name, err)
		}
		cfg.Models[name] = b
	}
	switch {
	case cfg.RateLimit < 0:
		return nil, fmt.Errorf("sim server: RateLimit must be >= 0, got %d", cfg.RateLimit)
	case cfg.RateWindow < 0:
		return nil, fmt.Errorf("sim server: RateWindow must be >= 0, got %s", cfg.RateWindow)
	case cfg.Concurrency < 0:
		return nil, fmt.Errorf("sim server: Concurrency must be >= 0, got %d", cfg.Concurrency)
	case cfg.LatencyScale < 0 || math.IsNaN(cfg.LatencyScale) || math.IsInf(cfg.LatencyScale, 0):
		return nil, fmt.Errorf("sim server: LatencyScale must be a finite number >= 0, got %v", cfg.LatencyScale)
	case cfg.OutputSize != 0 && (cfg.OutputSize < 64 || cfg.OutputSize > 2048):
		return nil, fmt.Errorf("sim server: OutputSize must be in [64, 2048], got %d", cfg.OutputSize)
	case cfg.Retention < 0:
		return nil, fmt.Errorf("sim server: Retention must be >= 0, got %s", cfg.Retention)
	case cfg.MaxPredictions < 0:
		return nil, fmt.Errorf("sim server: MaxPredictions must be >= 0, got %d", cfg.MaxPredictions)
	}
	if cfg.RateWindow == 0 {
		cfg.RateWindow = time.Minute
	}
	if cfg.LatencyScale == 0 {
		cfg.LatencyScale = 1
	}
	if cfg.OutputSize == 0 {
		cfg.OutputSize = DefaultSize
	}
	if cfg.Retention == 0 {
		cfg.Retention = time.Hour
	}
	if cfg.MaxPredictions == 0 {
		cfg.MaxPredictions = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:    cfg,
		models: cfg.Models,
		epoch:  cfg.Now(),
		fetch:  newFetchClient(),
		png:    png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngPool{}},
		rng:    rand.New(rand.NewPCG(uint64(cfg.Seed), 0x73696d2d73727672)), // "sim-srvr"
		salt:   splitmix(uint64(cfg.Seed)),
		preds:  make(map[string]*prediction),
		inputs: make(map[[32]byte]firstCreate),
		files:  make(map[string]*upload),

		perModel:    make(map[string]*modelState),
		throttleRNG: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x73696d2d74687274)), // "sim-thrt"
	}
	s.refs.imgs = make(map[[32]byte]image.Image)
	if m, ok := provider.DefaultRegistry().Lookup(ProviderName + ":kontext"); ok {
		if p, ok := m.Param("aspect_ratio"); ok {
			s.renderAspects = p.Enum
		}
	}
	s.accepts.cap = max(acceptLogSize, cfg.RateLimit+1)
	s.st.Since = s.epoch
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /v1/models/{owner}/{name}/predictions", s.handleCreate)
	m.HandleFunc("POST /v1/predictions", s.handleCreate)
	m.HandleFunc("GET /v1/predictions", s.handleList)
	m.HandleFunc("GET /v1/predictions/{id}", s.handleGet)
	m.HandleFunc("POST /v1/predictions/{id}/cancel", s.handleCancel)
	m.HandleFunc("POST /v1/files", s.handleUpload)
	m.HandleFunc("GET /v1/files/{id}", s.handleFileMeta)
	m.HandleFunc("GET /v1/files/{id}/download", s.handleFileDownload)
	m.HandleFunc("DELETE /v1/files/{id}", s.handleFileDelete)
	m.HandleFunc("GET /files/uploads/{id}", s.handleUploadContent)
	m.HandleFunc("GET /files/outputs/{file}", s.handleOutput)
	m.HandleFunc("GET /stats", s.handleStats)
	m.HandleFunc("POST /stats/reset", s.handleReset)
	m.HandleFunc("GET /admin/outage", s.handleOutage)
	m.HandleFunc("POST /admin/outage", s.handleOutage)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	m.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		if s.authorize(w, r) {
			writeProblem(w, notFound())
		}
	})
	s.mux = m
}

// Handler returns the HTTP handler serving every route; mount it at the
// root of a listener (the adapter's base URL is then http://HOST:PORT/v1).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// authorize checks the bearer token and answers 401 when it is wrong.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.Token)) == 1 {
		return true
	}
	s.mu.Lock()
	s.st.Unauthorized++
	s.mu.Unlock()
	writeProblem(w, &problem{Title: "Unauthenticated", Detail: "You did not pass a valid authentication token", Status: http.StatusUnauthorized})
	return false
}

// fate is the PRNG draws of one admitted create, always taken in the same
// order so outcomes depend only on Seed and the order of creates.
type fate struct {
	serverError, moderated, blank, slow, jitter float64
	seed                                        int64
}

func (s *Server) drawLocked() fate {
	return fate{
		serverError: s.rng.Float64(), moderated: s.rng.Float64(), blank: s.rng.Float64(),
		slow: s.rng.Float64(), jitter: s.rng.Float64(), seed: s.rng.Int64N(1 << 31),
	}
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	model := ""
	if owner := r.PathValue("owner"); owner != "" {
		model = owner + "/" + r.PathValue("name")
	}
	req, perr := s.parseCreate(w, r, model)
	if req != nil {
		model = req.model
	}

	s.mu.Lock()
	now := s.cfg.Now()
	s.st.Creates++
	s.advanceLocked(now)
	ts := s.accepts.stamp(now.Sub(s.epoch))
	ms := s.modelLocked(model) // nil for a model this server does not serve
	b := s.models[model]
	if ms != nil {
		ms.st.Creates++
	}
	reject := func(retry int, reason string) {
		s.st.Throttled++
		if ms != nil {
			ms.st.Throttled++
		}
		s.mu.Unlock()
		s.throttle(w, r, retry, reason)
	}
	if retry, over := s.rateExceededLocked(ts); over {
		reject(retry, "rate")
		return
	}
	if ms != nil {
		if retry, over := ms.rateExceeded(ts, b.RateLimit, s.cfg.RateWindow); over {
			ms.st.ThrottledRate++
			reject(retry, "model-rate")
			return
		}
	}
	if perr != nil {
		s.acceptLocked(ms, ts)
		s.st.Invalid++
		s.mu.Unlock()
		writeProblem(w, perr)
		return
	}
	if s.cfg.Concurrency > 0 && len(s.flight) >= s.cfg.Concurrency {
		s.st.ThrottledConcurrency++
		reject(ceilSeconds(s.flight[0].end.Sub(now)), "concurrency")
		return
	}
	if b.Concurrency > 0 && ms.inFlight >= b.Concurrency {
		s.st.ThrottledConcurrency++
		ms.st.ThrottledConcurrency++
		reject(ceilSeconds(s.firstEndLocked(model).Sub(now)), "model-concurrency")
		return
	}
	if b.ThrottleRate > 0 && s.throttleRNG.Float64() < b.ThrottleRate {
		s.st.ThrottledRandom++
		ms.st.ThrottledRandom++
		reject(1, "random")
		return
	}
	s.acceptLocked(ms, ts)
	d := s.drawLocked()
	if d.serverError < req.behavior.ServerErrorRate {
		s.st.ServerErrors++
		ms.st.ServerErrors++
		s.mu.Unlock()
		writeProblem(w, &problem{Title: "Service unavailable", Detail: "Simulated server error; please retry.", Status: http.StatusServiceUnavailable})
		return
	}
	p := s.createLocked(req, d, now)
	snap := *p
	s.mu.Unlock()

	if req.wait > 0 {
		if remaining := snap.end.Sub(now); remaining > 0 {
			t := time.NewTimer(min(remaining, req.wait))
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		s.mu.Lock()
		now = s.cfg.Now()
		snap = *p
		s.mu.Unlock()
	}
	status, _ := snap.state(now)
	code := http.StatusCreated
	inline := false
	if req.wait > 0 {
		if !isTerminal(status) {
			code = http.StatusAccepted
		}
		inline = !s.cfg.SyncOutputURL
	}
	v, err := s.view(&snap, now, baseURL(r), inline)
	if err != nil {
		s.cfg.Logger.ErrorContext(r.Context(), "sim server: render output", "prediction_id", snap.id, "model", snap.model, "error", err)
		writeProblem(w, &problem{Title: "Internal server error", Detail: err.Error(), Status: http.StatusInternalServerError})
		return
	}
	w.Header().Set("Location", v.URLs["get"])
	writeJSON(w, code, "application/json", v)
}

// acceptLocked records an accepted create at ts, for the server and for
// the model (nil for an unknown model).
func (s *Server) acceptLocked(ms *modelState, ts time.Duration) {
	s.accepts.add(ts)
	if ms != nil {
		ms.accepts.add(ts)
		ms.st.Accepted++
	}
}

// firstEndLocked returns when the model's first in-flight prediction ends.
func (s *Server) firstEndLocked(model string) time.Time {
	var first time.Time
	for _, p := range s.flight {
		if p.model == model && (first.IsZero() || p.end.Before(first)) {
			first = p.end
		}
	}
	return first
}

// firstCreate is the first prediction created for an exact input.
type firstCreate struct {
	id string
	at time.Time
}

// createLocked makes the prediction for an admitted create.
func (s *Server) createLocked(req *createRequest, d fate, now time.Time) *prediction {
	b := req.behavior
	seed := d.seed
	if req.hasSeed {
		seed = req.seed
	}
	mean := b.Latency
	if req.latency >= 0 {
		mean = req.latency
	}
	lat := float64(mean) * (1 + b.LatencyJitter*(2*d.jitter-1)) * s.cfg.LatencyScale
	if d.slow < b.SlowRate {
		lat *= 10
		s.st.Slow++
	}
	latency := time.Duration(max(0, lat))
	oc := outcomeSuccess
	switch {
	case d.moderated < b.ModerationRate:
		oc = outcomeModerated
	case d.blank < b.BlankRate:
		oc = outcomeBlank
	}
	p := &prediction{
		id: s.newIDLocked(), model: req.model, behavior: b, input: req.input,
		prompt: req.prompt, seed: seed, aspect: req.aspect, size: req.size, ext: req.ext, tags: req.tags, ref: req.ref,
		edit: req.edit, editMask: req.editMask,
		outcome: oc, created: now, started: now.Add(latency / 5), end: now.Add(latency), heapIdx: -1,
	}
	if req.cancel > 0 {
		p.deadline = now.Add(req.cancel)
		if p.deadline.Before(p.end) {
			p.end, p.cut = p.deadline, true
		}
	}
	s.preds[p.id] = p
	if first, ok := s.inputs[req.inputKey]; ok {
		s.st.RepeatedCreates++
		s.cfg.Logger.Info("sim server: prediction repeats an earlier one's exact input (paid twice)",
			"prediction_id", p.id, "model", p.model, "first_id", first.id, "first_created", first.at, "since_first_s", now.Sub(first.at).Seconds())
	} else if len(s.inputs) < s.cfg.MaxPredictions {
		s.inputs[req.inputKey] = firstCreate{p.id, now}
	}
	s.order = append(s.order, p)
	if len(s.order) > s.cfg.MaxPredictions {
		old := s.order[0]
		s.order[0] = nil
		s.order = s.order[1:]
		delete(s.preds, old.id)
	}
	s.st.Created++
	ms := s.modelLocked(p.model)
	ms.st.Created++
	if p.end.After(now) {
		heap.Push(&s.flight, p)
		s.st.MaxInFlight = max(s.st.MaxInFlight, len(s.flight))
		ms.inFlight++
		ms.st.MaxInFlight = max(ms.st.MaxInFlight, ms.inFlight)
	} else {
		s.countTerminalLocked(p)
	}
	return p
}

// advanceLocked retires the predictions whose end has passed.
func (s *Server) advanceLocked(now time.Time) {
	for len(s.flight) > 0 && !s.flight[0].end.After(now) {
		p := heap.Pop(&s.flight).(*prediction)
		s.perModel[p.model].inFlight--
		s.countTerminalLocked(p)
	}
}

// countTerminalLocked counts a prediction that reached its end.
func (s *Server) countTerminalLocked(p *prediction) {
	switch {
	case p.cut:
		s.st.Canceled++
	case p.outcome == outcomeModerated:
		s.st.Moderated++
	case p.outcome == outcomeBlank:
		s.st.Succeeded++
		s.st.Blank++
	default:
		s.st.Succeeded++
	}
}

// rateExceededLocked reports whether a create at ts (since epoch) is over
// the rate limit, and in how many whole seconds one would be admitted.
func (s *Server) rateExceededLocked(ts time.Duration) (retry int, over bool) {
	return s.accepts.exceeded(ts, s.cfg.RateLimit, s.cfg.RateWindow)
}

// ceilSeconds rounds d up to whole seconds, at least 1.
func ceilSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// throttleBody is Replicate's 429 body.
type throttleBody struct {
	Detail     string `json:"detail"`
	Status     int    `json:"status"`
	RetryAfter int    `json:"retry_after"`
}

func (s *Server) throttle(w http.ResponseWriter, r *http.Request, retry int, reason string) {
	s.cfg.Logger.DebugContext(r.Context(), "sim server: create throttled", "reason", reason, "retry_after_s", retry)
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	w.Header().Set("X-Sim-Throttle", reason)
	writeJSON(w, http.StatusTooManyRequests, "application/problem+json", throttleBody{
		Detail:     fmt.Sprintf("Request was throttled. Your rate limit resets in ~%ds.", retry),
		Status:     http.StatusTooManyRequests,
		RetryAfter: retry,
	})
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	s.mu.Lock()
	now := s.cfg.Now()
	s.st.Polls++
	p, ok := s.preds[r.PathValue("id")]
	var snap prediction
	if ok {
		snap = *p
	}
	s.mu.Unlock()
	if !ok {
		writeProblem(w, notFound())
		return
	}
	v, _ := s.view(&snap, now, baseURL(r), false) // no rendering, no error
	writeJSON(w, http.StatusOK, "application/json", v)
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	s.mu.Lock()
	now := s.cfg.Now()
	s.st.Cancels++
	s.advanceLocked(now)
	p, ok := s.preds[r.PathValue("id")]
	var snap prediction
	if ok {
		if status, _ := p.state(now); !isTerminal(status) {
			p.canceledAt = now
			if p.heapIdx >= 0 {
				heap.Remove(&s.flight, p.heapIdx)
				s.perModel[p.model].inFlight--
			}
			s.st.Canceled++
		}
		snap = *p
	}
	s.mu.Unlock()
	if !ok {
		writeProblem(w, notFound())
		return
	}
	v, _ := s.view(&snap, now, baseURL(r), false)
	writeJSON(w, http.StatusOK, "application/json", v)
}

func (s *Server) handleOutput(w http.ResponseWriter, r *http.Request) {
	id, ext, _ := strings.Cut(r.PathValue("file"), ".")
	s.mu.Lock()
	now := s.cfg.Now()
	p, ok := s.preds[id]
	var snap prediction
	if ok {
		snap = *p
		s.st.OutputFetches++
	}
	s.mu.Unlock()
	status, completed := snap.state(now)
	if !ok || status != "succeeded" || ext != snap.ext || snap.tags != nil || !now.Before(completed.Add(s.cfg.Retention)) {
		http.NotFound(w, r)
		return
	}
	data, err := s.render(&snap)
	if err != nil {
		s.cfg.Logger.ErrorContext(r.Context(), "sim server: render output", "prediction_id", id, "model", snap.model, "error", err)
		http.Error(w, "render output: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", http.DetectContentType(data))
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Set("Cache-Control", "private, max-age=3600")
	_, _ = w.Write(data)
}

// predictionJSON is Replicate's prediction object.
type predictionJSON struct {
	ID          string             `json:"id"`
	Model       string             `json:"model"`
	Version     string             `json:"version"`
	Input       json.RawMessage    `json:"input"`
	Logs        string             `json:"logs"`
	Output      any                `json:"output"`
	DataRemoved bool               `json:"data_removed"`
	Error       *string            `json:"error"`
	Status      string             `json:"status"`
	CreatedAt   string             `json:"created_at"`
	StartedAt   *string            `json:"started_at"`
	CompletedAt *string            `json:"completed_at"`
	Deadline    string             `json:"deadline,omitempty"`
	Source      string             `json:"source"`
	Metrics     map[string]float64 `json:"metrics"`
	URLs        map[string]string  `json:"urls"`
}

// view renders p as Replicate's JSON at now; inline puts an image output
// in a data: URI (rendering it) instead of a URL.
func (s *Server) view(p *prediction, now time.Time, base string, inline bool) (*predictionJSON, error) {
	status, completed := p.state(now)
	get := base + "/v1/predictions/" + p.id
	v := &predictionJSON{
		ID: p.id, Model: p.model, Version: "hidden", Input: p.input, Status: status,
		CreatedAt: apiTime(p.created), Source: "api", Metrics: map[string]float64{},
		URLs: map[string]string{"get": get, "cancel": get + "/cancel"},
	}
	if !p.deadline.IsZero() {
		v.Deadline = apiTime(p.deadline)
	}
	started := !p.started.After(now) && status != "aborted" && !(status == "canceled" && completed.Before(p.started))
	var logs strings.Builder
	if started {
		v.StartedAt = strPtr(apiTime(p.started))
		fmt.Fprintf(&logs, "Using seed: %d\nRunning %s...\n", p.seed, p.model)
	}
	if isTerminal(status) {
		v.CompletedAt = strPtr(apiTime(completed))
		v.Metrics["total_time"] = completed.Sub(p.created).Seconds()
		if started {
			v.Metrics["predict_time"] = completed.Sub(p.started).Seconds()
		}
		if !now.Before(completed.Add(s.cfg.Retention)) {
			v.Input, v.DataRemoved = json.RawMessage("{}"), true
			return v, nil
		}
	}
	switch status {
	case "succeeded":
		fmt.Fprintf(&logs, "Generated output in %.2fs\n", completed.Sub(p.started).Seconds())
		out, err := s.output(p, base, inline)
		if err != nil {
			return nil, err
		}
		v.Output = out
	case "failed":
		logs.WriteString("Safety checker flagged the output.\n")
		v.Error = strPtr(moderationError)
	case "canceled", "aborted":
		if started {
			logs.WriteString("Prediction canceled.\n")
		}
	}
	v.Logs = logs.String()
	return v, nil
}

// output is the output value of a succeeded prediction.
func (s *Server) output(p *prediction, base string, inline bool) (any, error) {
	if p.tags != nil {
		return p.tags, nil
	}
	uri := base + "/files/outputs/" + p.id + "." + p.ext
	if inline {
		data, err := s.render(p)
		if err != nil {
			return nil, err
		}
		uri = provider.DataURI(data)
	}
	if p.behavior.ArrayOutput {
		return []string{uri}, nil
	}
	return uri, nil
}

// baseURL is the absolute root of the server as the client reached it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func apiTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

func strPtr(v string) *string { return &v }

func writeJSON(w http.ResponseWriter, code int, contentType string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}

func writeProblem(w http.ResponseWriter, p *problem) {
	writeJSON(w, p.Status, "application/problem+json", p)
}

// newIDLocked returns a Replicate-style prediction or file id: 26
// lower-case base32 characters, unique per server and reproducible per Seed.
func (s *Server) newIDLocked() string {
	s.ids++
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], splitmix(s.ids^s.salt)) // a bijection of the counter: unique
	binary.BigEndian.PutUint64(b[8:], splitmix(s.ids+s.salt))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// splitmix is the SplitMix64 finalizer, a bijection on uint64.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// flight is a min-heap of in-flight predictions by end time.
type flight []*prediction

func (f flight) Len() int           { return len(f) }
func (f flight) Less(i, j int) bool { return f[i].end.Before(f[j].end) }
func (f flight) Swap(i, j int) {
	f[i], f[j] = f[j], f[i]
	f[i].heapIdx, f[j].heapIdx = i, j
}

func (f *flight) Push(x any) {
	p := x.(*prediction)
	p.heapIdx = len(*f)
	*f = append(*f, p)
}

func (f *flight) Pop() any {
	old := *f
	p := old[len(old)-1]
	old[len(old)-1] = nil
	p.heapIdx = -1
	*f = old[:len(old)-1]
	return p
}
