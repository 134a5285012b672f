package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// simStats is the part of the simulator's GET /stats the scenarios read.
type simStats struct {
	Creates              int64 `json:"creates"`
	Created              int64 `json:"created"`
	Throttled            int64 `json:"throttled"`
	ThrottledConcurrency int64 `json:"throttled_concurrency"`
	ThrottledRandom      int64 `json:"throttled_random"`
	ServerErrors         int64 `json:"server_errors"`
	Invalid              int64 `json:"invalid"`
	Blank                int64 `json:"blank"`
	Moderated            int64 `json:"moderated"`
	RepeatedCreates      int64 `json:"repeated_creates"`
	OutageRefused        int64 `json:"outage_refused"`
	OutageCreates        int64 `json:"outage_creates"`
	InFlight             int   `json:"in_flight"`
	MaxInFlight          int   `json:"max_in_flight"`
	Models               map[string]simModelStats
}

type simModelStats struct {
	Creates              int64          `json:"creates"`
	Accepted             int64          `json:"accepted"`
	Created              int64          `json:"created"`
	Throttled            int64          `json:"throttled"`
	ThrottledRate        int64          `json:"throttled_rate"`
	ThrottledConcurrency int64          `json:"throttled_concurrency"`
	ThrottledRandom      int64          `json:"throttled_random"`
	ServerErrors         int64          `json:"server_errors"`
	InFlight             int            `json:"in_flight"`
	MaxInFlight          int            `json:"max_in_flight"`
	FirstAccept          *time.Time     `json:"first_accept"`
	LastAccept           *time.Time     `json:"last_accept"`
	AcceptLog            int            `json:"accept_log"`
	MaxInWindow          map[string]int `json:"max_in_window"`
	OverLimit            *struct {
		Window  string `json:"window"`
		Limit   int    `json:"limit"`
		Windows int    `json:"windows"`
	} `json:"over_limit"`
}

// limitThrottles are the model's 429s due to its limits, which a fleet
// that keeps to them never receives (the random ones excluded).
func (m simModelStats) limitThrottles() int64 { return m.ThrottledRate + m.ThrottledConcurrency }

// fetchStats reads the simulator's /stats; window and limit set the
// over-limit computation (limit 0: the models' own).
func fetchStats(ctx context.Context, base string, window time.Duration, limit int) (*simStats, error) {
	q := url.Values{"window": {window.String()}}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/stats?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sim stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sim stats: %s", resp.Status)
	}
	var st simStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("sim stats: %w", err)
	}
	return &st, nil
}
