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
	// Created counts predictions created (answered 201 or 202).
	Created int64 `json:"created"`
	// Throttled counts creates answered 429, for either limit.
	Throttled int64 `json:"throttled"`
	// ThrottledConcurrency counts the 429s due to the concurrency cap.
	ThrottledConcurrency int64 `json:"throttled_concurrency"`
	// ServerErrors counts creates answered with a simulated 503.
	ServerErrors int64 `json:"server_errors"`
	// Invalid counts creates answered 400, 404, 413 or 422.
	Invalid int64 `json:"invalid"`
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

	// accepts are the accept times (offsets from a fixed origin, oldest
	// first) of the last 200,000 accepted creates.
	accepts []time.Duration
}

// MaxInWindow returns the largest number of accepted creates in any
// window [t, t+w) of length w: the number a rate limiter of w must have
// held to RateLimit. It is computed from the recorded accept times (the
// last 200,000), at nanosecond precision.
func (s Stats) MaxInWindow(w time.Duration) int {
	ts := s.accepts
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

// OverLimitWindows returns how many distinct accept times t start a
// window [t, t+w) holding more than limit accepted creates; 0 means a
// limit of limit per w was never exceeded.
func (s Stats) OverLimitWindows(w time.Duration, limit int) int {
	ts := s.accepts
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
	s.accepts.ts = s.accepts.ts[:0]
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
	RateLimit     int     `json:"rate_limit"`
	RateWindowS   float64 `json:"rate_window_s"`
	Concurrency   int     `json:"concurrency"`
	ElapsedS      float64 `json:"elapsed_s"`
	CreatedPerSec float64 `json:"created_per_s"`
	// AcceptLog is how many accept times MaxInWindow sees.
	AcceptLog int `json:"accept_log"`
	// MaxInWindow is Stats.MaxInWindow for 1 s, 10 s, 1 min, the rate
	// window and the ?window= of the request, keyed by duration.
	MaxInWindow map[string]int `json:"max_in_window"`
	// OverLimit is Stats.OverLimitWindows for ?window= (default the rate
	// window) and ?limit= (default RateLimit); absent without a limit.
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
		Stats: st, RateLimit: s.cfg.RateLimit, RateWindowS: s.cfg.RateWindow.Seconds(),
		Concurrency: s.cfg.Concurrency, ElapsedS: elapsed, AcceptLog: len(st.accepts),
		MaxInWindow: make(map[string]int),
	}
	if elapsed > 0 {
		out.CreatedPerSec = float64(st.Created) / elapsed
	}
	for _, d := range []time.Duration{time.Second, 10 * time.Second, time.Minute, s.cfg.RateWindow, window} {
		out.MaxInWindow[d.String()] = st.MaxInWindow(d)
	}
	if limit > 0 {
		out.OverLimit = &overLimitJSON{Window: window.String(), WindowS: window.Seconds(), Limit: limit, Windows: st.OverLimitWindows(window, limit)}
	}
	writeJSON(w, http.StatusOK, "application/json", out)
}

func (s *Server) handleReset(w http.ResponseWriter, r *http.Request) {
	s.Reset()
	s.handleStats(w, r)
}
