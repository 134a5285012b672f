package sim

import (
	"net/http"
	"strconv"
	"time"
)

// listPageSize is Replicate's page size for GET /predictions.
const listPageSize = 100

// listJSON is Replicate's paginated list.
type listJSON struct {
	Previous *string           `json:"previous"`
	Next     *string           `json:"next"`
	Results  []*predictionJSON `json:"results"`
}

// handleList serves GET /v1/predictions: newest first, 100 per page, with
// created_after / created_before (RFC 3339) filters, the fallback a client
// uses to find a prediction whose create response it lost. The cursor is an
// offset, so pages may shift while predictions are being created.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	q := r.URL.Query()
	var after, before time.Time
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"created_after", &after}, {"created_before", &before}} {
		if v := q.Get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				writeProblem(w, badRequest("%s: %q is not an RFC 3339 time", f.name, v))
				return
			}
			*f.t = t
		}
	}
	offset := 0
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeProblem(w, badRequest("cursor: %q is not a cursor from this server", v))
			return
		}
		offset = n
	}

	var page []prediction
	more := false
	s.mu.Lock()
	now := s.cfg.Now()
	s.st.Lists++
	skipped := 0
	for i := len(s.order) - 1; i >= 0; i-- {
		p := s.order[i]
		if (!after.IsZero() && !p.created.After(after)) || (!before.IsZero() && !p.created.Before(before)) {
			continue
		}
		if skipped < offset {
			skipped++
			continue
		}
		if len(page) == listPageSize {
			more = true
			break
		}
		page = append(page, *p)
	}
	s.mu.Unlock()

	out := listJSON{Results: make([]*predictionJSON, 0, len(page))}
	base := baseURL(r)
	for i := range page {
		v, _ := s.view(&page[i], now, base, false)
		out.Results = append(out.Results, v)
	}
	link := func(off int) *string {
		u := *r.URL
		q := u.Query()
		q.Set("cursor", strconv.Itoa(off))
		u.RawQuery = q.Encode()
		return strPtr(base + u.RequestURI())
	}
	if more {
		out.Next = link(offset + listPageSize)
	}
	if offset > 0 {
		out.Previous = link(max(0, offset-listPageSize))
	}
	writeJSON(w, http.StatusOK, "application/json", out)
}
