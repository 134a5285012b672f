package sim

import (
	"net/http"
	"sort"
	"strconv"
	"time"
)

// acceptLogSize is how many accept timestamps Stats keeps (more when
// RateLimit is larger, since the limiter needs a full window).
const acceptLogSize = 200_000

// windowHistory is how far back Stats.Windows goes.
const windowHistory = 10 * time.Minute

// Stats are the server's counters since it started or was last reset.
type Stats struct {
	// Since is when counting started (server start or last reset).
	Since time.Time `json:"since"`
	// Creates counts authenticated create requests, whatever the answer.
	Creates int64 `json:"creates"`
	// Created counts predictions created (answered 201 or 202): the paid
	// predictions, since a provider bills every prediction it creates,
	// whatever its end, and nothing for a create it refuses.
	Created int64 `json:"created"`
	// Throttled counts creates answered 429 for any reason: a limit of the
	// server or of a model, or a model's ThrottleRate.
	Throttled int64 `json:"throttled"`
	// ThrottledConcurrency counts the 429s due to a concurrency cap, the
	// server's or a model's.
	ThrottledConcurrency int64 `json:"throttled_concurrency"`
	// ThrottledRandom counts the 429s drawn by ModelBehavior.ThrottleRate.
	ThrottledRandom int64 `json:"throttled_random"`
	// ServerErrors counts creates answered with a simulated 503.
	ServerErrors int64 `json:"server_errors"`
	// Invalid counts creates answered 400, 404, 413 or 422.
	Invalid int64 `json:"invalid"`
	// RepeatedCreates counts the predictions created whose model and whole
	// input (prompt, seed, references, every parameter) are those of an
	// earlier created prediction: the same attempt paid for twice, as when
	// a client loses track of a prediction and creates it again instead of
	// polling it. A retry with a new seed is not a repeat. Each is logged
	// (info) with the first prediction's id and time.
	RepeatedCreates int64 `json:"repeated_creates"`
	// OutageRefused counts provider requests answered 503 because an
	// outage was on (StartOutage); they are not counted anywhere else.
	OutageRefused int64 `json:"outage_refused"`
	// OutageCreates counts the creates among OutageRefused.
	OutageCreates int64 `json:"outage_creates"`
	// Unauthorized counts requests answered 401.
	Unauthorized int64 `json:"unauthorized"`
	// Polls counts authenticated GET /v1/predictions/{id} requests.
	Polls int64 `json:"polls"`
	// Lists counts GET /v1/predictions (list) requests.
	Lists int64 `json:"lists"`
	// Cancels counts cancel requests.
	Cancels int64 `json:"cancels"`
	// Uploads counts files uploaded.
	Uploads int64 `json:"uploads"`
	// OutputFetches counts GETs of output files.
	OutputFetches int64 `json:"output_fetches"`
	// Succeeded counts predictions that ended "succeeded", Blank included.
	Succeeded int64 `json:"succeeded"`
	// Moderated counts predictions that ended "failed" by moderation.
	Moderated int64 `json:"moderated"`
	// Blank counts succeeded predictions whose output is all black.
	Blank int64 `json:"blank"`
	// Slow counts predictions created with 10× latency.
	Slow int64 `json:"slow"`
	// Canceled counts predictions canceled by a client or a Cancel-After
	// deadline (aborted included).
	Canceled int64 `json:"canceled"`
	// InFlight is the number of predictions created and not yet terminal.
	InFlight int `json:"in_flight"`
	// MaxInFlight is the largest InFlight seen.
	MaxInFlight int `json:"max_in_flight"`
	// Windows counts accepted creates (every create not answered 429) per
	// fixed 1-second window, keyed by the window's start in Unix seconds,
	// over the last 10 minutes.
	Windows map[int64]int `json:"windows"`
	// Models are the counters of each model that was asked for at least one
	// create, keyed by "owner/name".
	Models map[string]ModelStats `json:"models,omitempty"`

	// accepts are the accept times (offsets from a fixed origin, oldest
	// first) of the last 200,000 accepted creates.
	accepts []time.Duration
}

// MaxInWindow returns the largest number of accepted creates in any
// window [t, t+w) of length w: the number a rate limiter of w must have
// held to RateLimit. It is computed from the recorded accept times (the
// last 200,000), at nanosecond precision.
func (s Stats) MaxInWindow(w time.Duration) int { return maxInWindow(s.accepts, w) }

// OverLimitWindows returns how many distinct accept times t start a
// window [t, t+w) holding more than limit accepted creates; 0 means a
// limit of limit per w was never exceeded.
func (s Stats) OverLimitWindows(w time.Duration, limit int) int {
	return overLimitWindows(s.accepts, w, limit)
}

// ModelStats are one model's counters. A create counts for a model when
// its path or body names a model the server serves.
type ModelStats struct {
	// Creates counts the model's authenticated create requests, whatever
	// the answer.
	Creates int64 `json:"creates"`
	// Accepted counts the creates not answered 429 (the ones a rate limit
	// counts), including those then answered 400, 422 or 503.
	Accepted int64 `json:"accepted"`
	// Created counts predictions created (answered 201 or 202): the
	// model's paid predictions.
	Created int64 `json:"created"`
	// Throttled counts creates answered 429 for any reason: the server's
	// limits, the model's, or ThrottleRate.
	Throttled int64 `json:"throttled"`
	// ThrottledRate counts the 429s due to the model's RateLimit.
	ThrottledRate int64 `json:"throttled_rate"`
	// ThrottledConcurrency counts the 429s due to the model's Concurrency.
	ThrottledConcurrency int64 `json:"throttled_concurrency"`
	// ThrottledRandom counts the 429s drawn by the model's ThrottleRate.
	ThrottledRandom int64 `json:"throttled_random"`
	// ServerErrors counts creates answered with a simulated 503.
	ServerErrors int64 `json:"server_errors"`
	// InFlight is the number of the model's predictions not yet terminal.
	InFlight int `json:"in_flight"`
	// MaxInFlight is the largest InFlight seen.
	MaxInFlight int `json:"max_in_flight"`

	// accepts are the model's accept times, as Stats.accepts.
	accepts []time.Duration
	epoch   time.Time
}

// Equal reports whether m and o hold the same counters. The accept logs,
// which hold wall-clock times, are not compared, so two runs of the same
// creates under the same Seed compare equal (go-cmp uses this method).
func (m ModelStats) Equal(o ModelStats) bool {
	return m.Creates == o.Creates && m.Accepted == o.Accepted && m.Created == o.Created &&
		m.Throttled == o.Throttled && m.ThrottledRate == o.ThrottledRate &&
		m.ThrottledConcurrency == o.ThrottledConcurrency && m.ThrottledRandom == o.ThrottledRandom &&
		m.ServerErrors == o.ServerErrors && m.InFlight == o.InFlight && m.MaxInFlight == o.MaxInFlight
}

// MaxInWindow is Stats.MaxInWindow for the model's accepted creates.
func (m ModelStats) MaxInWindow(w time.Duration) int { return maxInWindow(m.accepts, w) }

// OverLimitWindows is Stats.OverLimitWindows for the model's accepted
// creates.
func (m ModelStats) OverLimitWindows(w time.Duration, limit int) int {
	return overLimitWindows(m.accepts, w, limit)
}

// AcceptSpan returns the times of the model's first and last recorded
// accepted creates (zero when there was none): the span over which a
// client held the model's rate.
func (m ModelStats) AcceptSpan() (first, last time.Time) {
	if len(m.accepts) == 0 {
		return time.Time{}, time.Time{}
	}
	return m.epoch.Add(m.accepts[0]), m.epoch.Add(m.accepts[len(m.accepts)-1])
}

// AcceptLog returns how many accept times MaxInWindow, OverLimitWindows
// and AcceptSpan see (the last 200,000, or more with a larger RateLimit).
func (m ModelStats) AcceptLog() int { return len(m.accepts) }

func maxInWindow(ts []time.Duration, w time.Duration) int {
	if w <= 0 {
		return 0
	}
	best, j := 0, 0
	for i := range ts {
		for j < len(ts) && ts[j]-ts[i] < w {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

func overLimitWindows(ts []time.Duration, w time.Duration, limit int) int {
	if w <= 0 {
		return 0
	}
	n, j := 0, 0
	for i := range ts {
		for j < len(ts) && ts[j]-ts[i] < w {
			j++
		}
		if (i == 0 || ts[i] != ts[i-1]) && j-i > limit {
			n++
		}
	}
	return n
}

// modelState is what the server tracks per model.
type modelState struct {
	st       ModelStats // counters; InFlight and accepts are filled by Stats()
	accepts  acceptLog
	inFlight int
}

// modelLocked returns the state of a model the server serves, creating it
// at the first create; nil for any other name.
func (s *Server) modelLocked(name string) *modelState {
	if ms, ok := s.perModel[name]; ok {
		return ms
	}
	b, ok := s.models[name]
	if !ok {
		return nil
	}
	ms := &modelState{accepts: acceptLog{cap: max(acceptLogSize, b.RateLimit+1)}}
	s.perModel[name] = ms
	return ms
}

// rateExceeded is acceptLog.exceeded for the model's own rate limit.
func (ms *modelState) rateExceeded(ts time.Duration, limit int, w time.Duration) (int, bool) {
	return ms.accepts.exceeded(ts, limit, w)
}

// Stats returns a copy of the counters, with in-flight predictions
// retired up to now.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	s.advanceLocked(now)
	st := s.st
	st.InFlight = len(s.flight)
	st.accepts = append([]time.Duration(nil), s.accepts.last(acceptLogSize)...)
	st.Windows = make(map[int64]int)
	for _, ts := range s.accepts.since(now.Sub(s.epoch) - windowHistory) {
		st.Windows[s.epoch.Add(ts).Unix()]++
	}
	if len(s.perModel) > 0 {
		st.Models = make(map[string]ModelStats, len(s.perModel))
		for name, ms := range s.perModel {
			m := ms.st
			m.InFlight = ms.inFlight
			m.accepts = append([]time.Duration(nil), ms.accepts.last(ms.accepts.cap)...)
			m.epoch = s.epoch
			st.Models[name] = m
		}
	}
	return st
}

// Reset zeroes the counters and forgets the accept log, so the rate limit
// starts afresh; predictions (and so the in-flight count) are kept, and
// MaxInFlight restarts at the current in-flight count.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	s.advanceLocked(now)
	s.st = Stats{Since: now, MaxInFlight: len(s.flight)}
	clear(s.inputs)
	s.accepts.ts = s.accepts.ts[:0]
	for _, ms := range s.perModel {
		ms.st = ModelStats{MaxInFlight: ms.inFlight}
		ms.accepts.ts = ms.accepts.ts[:0]
	}
}

// acceptLog is the nondecreasing list of accept times, as offsets from the
// server's epoch. It keeps at least the last cap entries.
type acceptLog struct {
	ts  []time.Duration
	cap int
}

// stamp returns t, or the latest recorded time if the clock went back, so
// the log stays sorted.
func (l *acceptLog) stamp(t time.Duration) time.Duration {
	if n := len(l.ts); n > 0 && t < l.ts[n-1] {
		return l.ts[n-1]
	}
	return t
}

func (l *acceptLog) add(t time.Duration) {
	if len(l.ts) >= 2*l.cap {
		n := copy(l.ts, l.ts[len(l.ts)-l.cap:])
		l.ts = l.ts[:n]
	}
	l.ts = append(l.ts, t)
}

// since returns the recorded times after t.
func (l *acceptLog) since(t time.Duration) []time.Duration {
	i := sort.Search(len(l.ts), func(i int) bool { return l.ts[i] > t })
	return l.ts[i:]
}

// last returns the last n recorded times.
func (l *acceptLog) last(n int) []time.Duration {
	return l.ts[max(0, len(l.ts)-n):]
}

// statsJSON is the body of GET /stats.
type statsJSON struct {
	Stats
	// PaidPredictions is Stats.Created under the name a bill uses: every
	// prediction created is paid, whatever its end; a refused create is not.
	PaidPredictions int64 `json:"paid_predictions"`
	// Outage is the current outage window (POST /admin/outage).
	Outage        outageJSON `json:"outage"`
	RateLimit     int        `json:"rate_limit"`
	RateWindowS   float64    `json:"rate_window_s"`
	Concurrency   int        `json:"concurrency"`
	ElapsedS      float64    `json:"elapsed_s"`
	CreatedPerSec float64    `json:"created_per_s"`
	// AcceptLog is how many accept times MaxInWindow sees.
	AcceptLog int `json:"accept_log"`
	// MaxInWindow is Stats.MaxInWindow for 1 s, 10 s, 1 min, the rate
	// window and the ?window= of the request, keyed by duration.
	MaxInWindow map[string]int `json:"max_in_window"`
	// OverLimit is Stats.OverLimitWindows for ?window= (default the rate
	// window) and ?limit= (default RateLimit); absent without a limit.
	OverLimit *overLimitJSON `json:"over_limit,omitempty"`
	// Models shadows Stats.Models with each model's derived fields.
	Models map[string]modelStatsJSON `json:"models,omitempty"`
}

// modelStatsJSON is one model's entry in GET /stats.
type modelStatsJSON struct {
	ModelStats
	// PaidPredictions is ModelStats.Created (see statsJSON).
	PaidPredictions int64   `json:"paid_predictions"`
	RateLimit       int     `json:"rate_limit"`
	Concurrency     int     `json:"concurrency"`
	ThrottleRate    float64 `json:"throttle_rate"`
	// FirstAccept and LastAccept span the recorded accepted creates
	// (absent without any).
	FirstAccept *time.Time `json:"first_accept,omitempty"`
	LastAccept  *time.Time `json:"last_accept,omitempty"`
	AcceptLog   int        `json:"accept_log"`
	// MaxInWindow is ModelStats.MaxInWindow for the same windows as the
	// server's.
	MaxInWindow map[string]int `json:"max_in_window"`
	// OverLimit is ModelStats.OverLimitWindows for ?window= (default the
	// rate window) and the model's RateLimit, or ?limit= (default the
	// server's RateLimit) for a model without one; absent without a limit.
	OverLimit *overLimitJSON `json:"over_limit,omitempty"`
}

type overLimitJSON struct {
	Window  string  `json:"window"`
	WindowS float64 `json:"window_s"`
	Limit   int     `json:"limit"`
	Windows int     `json:"windows"`
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	window, limit := s.cfg.RateWindow, s.cfg.RateLimit
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeProblem(w, badRequest("window: %q is not a positive duration", v))
			return
		}
		window = d
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeProblem(w, badRequest("limit: %q is not a non-negative integer", v))
			return
		}
		limit = n
	}
	st := s.Stats()
	elapsed := s.cfg.Now().Sub(st.Since).Seconds()
	out := statsJSON{
		Stats: st, PaidPredictions: st.Created, Outage: s.outage(), RateLimit: s.cfg.RateLimit, RateWindowS: s.cfg.RateWindow.Seconds(),
		Concurrency: s.cfg.Concurrency, ElapsedS: elapsed, AcceptLog: len(st.accepts),
		MaxInWindow: make(map[string]int),
	}
	if elapsed > 0 {
		out.CreatedPerSec = float64(st.Created) / elapsed
	}
	windows := []time.Duration{time.Second, 10 * time.Second, time.Minute, s.cfg.RateWindow, window}
	for _, d := range windows {
		out.MaxInWindow[d.String()] = st.MaxInWindow(d)
	}
	if limit > 0 {
		out.OverLimit = &overLimitJSON{Window: window.String(), WindowS: window.Seconds(), Limit: limit, Windows: st.OverLimitWindows(window, limit)}
	}
	if len(st.Models) > 0 {
		out.Models = make(map[string]modelStatsJSON, len(st.Models))
	}
	for name, m := range st.Models {
		b := s.models[name]
		mj := modelStatsJSON{ModelStats: m, PaidPredictions: m.Created, RateLimit: b.RateLimit, Concurrency: b.Concurrency,
			ThrottleRate: b.ThrottleRate, AcceptLog: m.AcceptLog(), MaxInWindow: make(map[string]int)}
		if first, last := m.AcceptSpan(); !first.IsZero() {
			mj.FirstAccept, mj.LastAccept = &first, &last
		}
		for _, d := range windows {
			mj.MaxInWindow[d.String()] = m.MaxInWindow(d)
		}
		ml := limit
		if b.RateLimit > 0 {
			ml = b.RateLimit
		}
		if ml > 0 {
			mj.OverLimit = &overLimitJSON{Window: window.String(), WindowS: window.Seconds(), Limit: ml, Windows: m.OverLimitWindows(window, ml)}
		}
		out.Models[name] = mj
	}
	writeJSON(w, http.StatusOK, "application/json", out)
}

func (s *Server) handleReset(w http.ResponseWriter, r *http.Request) {
	s.Reset()
	s.handleStats(w, r)
}

// exceeded reports whether a create at ts would make limit accepts within
// a window w (exact sliding window: the accepts less than w before ts), and
// in how many whole seconds one would be admitted. limit 0 means none.
func (l *acceptLog) exceeded(ts time.Duration, limit int, w time.Duration) (retry int, over bool) {
	if limit <= 0 {
		return 0, false
	}
	in := l.since(ts - w) // accepts with t > ts-w
	if len(in) < limit {
		return 0, false
	}
	// The create becomes possible when the accept that keeps the window
	// full leaves it.
	leaving := in[len(in)-limit]
	return ceilSeconds(leaving + w - ts), true
}
