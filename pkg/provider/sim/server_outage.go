package sim

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Outages: a window of time during which the simulated provider is down.
// Every provider request (every route under /v1/ and /files/: creates,
// polls, cancels, lists, uploads, output downloads) is then answered 503
// with Replicate's problem body, before authentication and before any
// limit, so nothing is created, accepted by a rate limit or paid for.
// Predictions created before the outage keep running on the clock and are
// found terminal when it ends, as they would be at a provider whose API
// front end failed. /stats, /healthz and /admin keep answering, so a
// benchmark can watch and steer the outage.
//
// Start one with Server.StartOutage or, over HTTP (no auth, like /stats),
//
//	POST /admin/outage?for=30s   down from now for 30 s (for=0 ends it)
//	GET  /admin/outage           the current window, if any
//
// Stats.OutageRefused counts the requests refused, Stats.OutageCreates the
// creates among them.

// outageJSON is the body of /admin/outage.
type outageJSON struct {
	Active bool       `json:"active"`
	From   *time.Time `json:"from,omitempty"`
	Until  *time.Time `json:"until,omitempty"`
}

// StartOutage makes every provider request fail with 503 from now for d;
// d <= 0 ends any outage at once. A new call replaces the window.
func (s *Server) StartOutage(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if d <= 0 {
		s.outageFrom, s.outageUntil = time.Time{}, time.Time{}
		return
	}
	s.outageFrom, s.outageUntil = now, now.Add(d)
}

// outage returns the current outage window as JSON.
func (s *Server) outage() outageJSON {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if s.outageUntil.IsZero() || !now.Before(s.outageUntil) {
		return outageJSON{}
	}
	from, until := s.outageFrom, s.outageUntil
	return outageJSON{Active: true, From: &from, Until: &until}
}

// refuseInOutage answers a provider request 503 when an outage is on, and
// reports whether it did.
func (s *Server) refuseInOutage(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/v1/") && !strings.HasPrefix(p, "/files/") {
		return false
	}
	s.mu.Lock()
	now := s.cfg.Now()
	down := !s.outageUntil.IsZero() && !now.Before(s.outageFrom) && now.Before(s.outageUntil)
	if down {
		s.st.OutageRefused++
		if r.Method == http.MethodPost && (p == "/v1/predictions" || strings.HasSuffix(p, "/predictions")) {
			s.st.OutageCreates++
		}
	}
	s.mu.Unlock()
	if down {
		writeProblem(w, &problem{Title: "Service unavailable", Detail: "Replicate is temporarily unavailable (simulated outage); please retry.", Status: http.StatusServiceUnavailable})
	}
	return down
}

func (s *Server) handleOutage(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		v := r.URL.Query().Get("for")
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeProblem(w, badRequest("for: %q is not a duration such as 30s (0 ends the outage)", v))
			return
		}
		s.StartOutage(d)
	}
	body, _ := json.Marshal(s.outage()) // plain struct: cannot fail
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(body, '\n'))
}

// serveHTTP is the server's handler: outages first, then the routes.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if s.refuseInOutage(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}
