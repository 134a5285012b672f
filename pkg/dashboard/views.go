package dashboard

import (
	"cmp"
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
)

// rateWindow is the span of recent completions the rate is measured over.
const rateWindow = time.Minute

// Run is a run as the API shows it.
type Run struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	State     string `json:"state"`
	Paused    bool   `json:"paused"`
	Canceled  bool   `json:"canceled"`
	Total     int    `json:"total"`
	Done      int    `json:"done"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Skipped   int    `json:"skipped"`
	// SkippedBudget counts tasks skipped because the budget would pass.
	SkippedBudget int       `json:"skipped_budget"`
	Cached        int       `json:"cached"`
	Pending       int       `json:"pending"`
	CostUSD       float64   `json:"cost_usd"`
	ReservedUSD   float64   `json:"reserved_usd"`
	BudgetUSD     float64   `json:"budget_usd,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	FinishedAt    time.Time `json:"finished_at,omitzero"`
	ElapsedS      float64   `json:"elapsed_s"`
	Finalized     bool      `json:"finalized"`
	Models        []string  `json:"models,omitempty"`
	// Report is the report's path on this server, once the run is finalized.
	Report string `json:"report,omitempty"`
}

// status is the state a person reads: running, paused, canceling, done or
// canceled.
func status(st *runstate.Status) string {
	switch {
	case st.Finalized > 0 && st.Complete():
		return string(st.State)
	case st.Canceled:
		return "canceling"
	case st.Paused:
		return "paused"
	}
	return string(runstate.Running)
}

func (h *Handler) view(st *runstate.Status) Run {
	end := h.cfg.Now()
	if !st.FinishedAt.IsZero() && st.Finalized > 0 {
		end = st.FinishedAt
	}
	r := Run{
		ID: st.ID, Name: st.Name, State: status(st), Paused: st.Paused, Canceled: st.Canceled,
		Total: st.Total, Done: st.Done(), Succeeded: st.Succeeded, Failed: st.Failed,
		Skipped: st.SkippedBudget + st.SkippedCanceled, SkippedBudget: st.SkippedBudget,
		Cached: st.Cached, Pending: max(st.Total-st.Done(), 0), CostUSD: st.CostUSD, ReservedUSD: st.ReservedUSD,
		BudgetUSD: st.BudgetUSD, CreatedAt: st.CreatedAt.UTC(), Finalized: st.Finalized > 0,
		ElapsedS: max(end.Sub(st.CreatedAt).Seconds(), 0), Models: st.Models,
	}
	if !st.FinishedAt.IsZero() {
		r.FinishedAt = st.FinishedAt.UTC()
	}
	if r.Finalized {
		r.Report = fileURL(store.ReportKey(st.ID))
	}
	return r
}

// Detail is everything the run page shows besides the gallery.
type Detail struct {
	Run Run `json:"run"`
	// RatePerMin is tasks finished per minute over the last minute (or
	// since the run started, if that is shorter).
	RatePerMin float64 `json:"rate_per_min"`
	// ETAS is the seconds left at that rate; absent when unknown or paused.
	ETAS     *float64       `json:"eta_s,omitempty"`
	Models   []ModelRow     `json:"models"`
	Limits   []LimitRow     `json:"limits"`
	Queues   []QueueRow     `json:"queues"`
	Failures []FailureGroup `json:"failures"`
	// Actions says whether this server acts at all (a token is set) and
	// whether this request may.
	Actions ActionState `json:"actions"`
}

// ActionState tells the page which buttons work.
type ActionState struct {
	Enabled bool `json:"enabled"`
	Allowed bool `json:"allowed"`
	Retry   bool `json:"retry"`
}

// ModelRow is one model's line of the per-model table.
type ModelRow struct {
	manifest.ModelStats
	// Retries counts attempts beyond each task's first.
	Retries int `json:"retries"`
	// CheckFailures counts failed output checks by check name (over every
	// attempt, retried ones included).
	CheckFailures map[string]int `json:"check_failures"`
}

// LimitRow is a fleet limit in force for the run's models and its state.
type LimitRow struct {
	Key               string   `json:"key"`
	Models            []string `json:"models"`
	RequestsPerMinute int      `json:"requests_per_minute"`
	Concurrency       int      `json:"concurrency"`
	InFlight          int      `json:"in_flight"`
	CooldownS         float64  `json:"cooldown_s"`
	// Circuit is "closed", "failing" (transient failures in a row) or "open".
	Circuit  string  `json:"circuit"`
	Failures int     `json:"failures"`
	OpenS    float64 `json:"open_s"`
	Error    string  `json:"error,omitempty"`
}

// QueueRow is one provider queue's depth. Queues are shared by every run.
type QueueRow struct {
	Queue     string `json:"queue"`
	Pending   int    `json:"pending"`
	Active    int    `json:"active"`
	Scheduled int    `json:"scheduled"`
	Retry     int    `json:"retry"`
	Archived  int    `json:"archived"`
	Error     string `json:"error,omitempty"`
}

// FailureGroup is the run's failed or skipped tasks of one class.
type FailureGroup struct {
	Class    string           `json:"class"`
	Count    int              `json:"count"`
	Messages []FailureMessage `json:"messages"`
}

// FailureMessage is one distinct message within a class.
type FailureMessage struct {
	Message string `json:"message"`
	Count   int    `json:"count"`
	// Tasks are the first few tasks that ended with it.
	Tasks []string `json:"tasks"`
}

// maxFailureTasks is how many task ids a failure message lists.
const maxFailureTasks = 5

func (h *Handler) detail(ctx context.Context, st *runstate.Status, recs []manifest.Record, actions ActionState) (Detail, error) {
	run := h.view(st)
	end := h.cfg.Now()
	if run.Finalized && !st.FinishedAt.IsZero() {
		end = st.FinishedAt // a finished run's rate is its last minute's
	}
	d := Detail{Run: run, Models: modelRows(st, recs), Failures: failureGroups(recs), Actions: actions}
	d.RatePerMin = finishRate(recs, st.CreatedAt, end)
	if d.RatePerMin > 0 && run.Pending > 0 && !run.Paused && !run.Finalized {
		eta := float64(run.Pending) / d.RatePerMin * 60
		d.ETAS = &eta
	}
	var err error
	if d.Limits, err = h.limits(ctx, st.Models); err != nil {
		return Detail{}, err
	}
	d.Queues = h.queues(st.Models)
	return d, nil
}

// finishRate is tasks finished per minute over the rateWindow before now, or
// since the run was created when that is more recent.
func finishRate(recs []manifest.Record, created, now time.Time) float64 {
	from := now.Add(-rateWindow)
	if created.After(from) {
		from = created
	}
	span := now.Sub(from)
	if span < time.Second {
		return 0
	}
	n := 0
	for _, r := range recs {
		if r.FinishedAt.After(from) && !r.FinishedAt.After(now) {
			n++
		}
	}
	return float64(n) / span.Minutes()
}

var checkRE = regexp.MustCompile(`output check ([A-Za-z0-9_-]+):`)

func modelRows(st *runstate.Status, recs []manifest.Record) []ModelRow {
	refs := map[string]string{}
	for _, r := range recs {
		refs[r.Model] = r.ModelRef
	}
	sum := manifest.Summarize(manifest.RunMeta{Run: st.ID, ModelRefs: refs}, recs)
	rows := make([]ModelRow, len(sum.Models))
	index := map[string]int{}
	for i, m := range sum.Models {
		rows[i] = ModelRow{ModelStats: m, CheckFailures: map[string]int{}}
		index[m.Model] = i
	}
	for _, r := range recs {
		row := &rows[index[r.Model]]
		row.Retries += max(r.Attempts-1, 0)
		for _, a := range r.AttemptLog {
			if a.Class != string(provider.BadOutput) {
				continue
			}
			check := "other"
			if m := checkRE.FindStringSubmatch(a.Error); m != nil {
				check = m[1]
			}
			row.CheckFailures[check]++
		}
	}
	return rows
}

func failureGroups(recs []manifest.Record) []FailureGroup {
	type key struct{ class, msg string }
	groups := map[string]*FailureGroup{}
	msgs := map[key]*FailureMessage{}
	var order []key
	for _, r := range recs {
		if r.Status == manifest.Succeeded {
			continue
		}
		class := r.ErrorClass
		if r.Status.Skipped() || class == "" {
			class = string(r.Status)
		}
		g, ok := groups[class]
		if !ok {
			g = &FailureGroup{Class: class}
			groups[class] = g
		}
		g.Count++
		msg := messageShape(r.Error)
		k := key{class, msg}
		m, ok := msgs[k]
		if !ok {
			m = &FailureMessage{Message: msg}
			msgs[k] = m
			order = append(order, k)
		}
		m.Count++
		if len(m.Tasks) < maxFailureTasks {
			m.Tasks = append(m.Tasks, r.Task)
		}
	}
	for _, k := range order {
		groups[k.class].Messages = append(groups[k.class].Messages, *msgs[k])
	}
	out := make([]FailureGroup, 0, len(groups))
	for _, g := range groups {
		slices.SortFunc(g.Messages, func(a, b FailureMessage) int { return cmp.Compare(b.Count, a.Count) })
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b FailureGroup) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Class, b.Class))
	})
	return out
}

var (
	requestRE = regexp.MustCompile(`\s*\(request [^)]*\)|\brequest [A-Za-z0-9_.:-]+`)
	idRE      = regexp.MustCompile(`\b[0-9a-fA-F-]{12,}\b`)
)

// messageShape is an error message without the ids that make every
// occurrence unique (provider request ids, hex ids), so failures of one
// kind group together.
func messageShape(msg string) string {
	msg = requestRE.ReplaceAllString(msg, "")
	return strings.TrimSpace(idRE.ReplaceAllString(msg, "…"))
}

// limits reads the live state of each fleet limit the run's models use.
func (h *Handler) limits(ctx context.Context, refs []string) ([]LimitRow, error) {
	var rows []LimitRow
	index := map[string]int{}
	for _, ref := range refs {
		m, ok := h.cfg.Registry.Lookup(ref)
		if !ok {
			continue
		}
		lim := ratelimit.For(m, h.cfg.Limits)
		if i, ok := index[lim.Key]; ok {
			rows[i].Models = append(rows[i].Models, ref)
			continue
		}
		index[lim.Key] = len(rows)
		row := LimitRow{Key: lim.Key, Models: []string{ref}, RequestsPerMinute: lim.RequestsPerMinute, Concurrency: lim.Concurrency, Circuit: "closed"}
		if h.cfg.Limiter != nil {
			st, err := h.cfg.Limiter.State(ctx, lim.Key)
			if err != nil {
				if ctx.Err() != nil {
					return nil, err
				}
				row.Error = "state unavailable"
				h.cfg.Logger.WarnContext(ctx, "read limit state", "limit", lim.Key, "err", err)
			}
			now := h.cfg.Now()
			row.InFlight = st.InFlight
			if d := st.CooldownUntil.Sub(now); d > 0 {
				row.CooldownS = d.Seconds()
			}
			row.Failures = st.Failures
			switch {
			case st.OpenUntil.After(now):
				row.Circuit, row.OpenS = "open", st.OpenUntil.Sub(now).Seconds()
			case st.Failures > 0:
				row.Circuit = "failing"
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// queues reads the depth of the queues of the run's providers.
func (h *Handler) queues(refs []string) []QueueRow {
	if h.cfg.Queues == nil {
		return nil
	}
	var rows []QueueRow
	seen := map[string]bool{}
	for _, ref := range refs {
		prov, _, _ := strings.Cut(ref, ":")
		q := task.QueueFor(prov)
		if seen[q] {
			continue
		}
		seen[q] = true
		row := QueueRow{Queue: q}
		info, err := h.cfg.Queues.GetQueueInfo(q)
		switch {
		case errors.Is(err, asynq.ErrQueueNotFound):
		case err != nil:
			row.Error = "depth unavailable"
			h.cfg.Logger.Warn("read queue depth", "queue", q, "err", err)
		default:
			row.Pending, row.Active, row.Scheduled, row.Retry, row.Archived = info.Pending, info.Active, info.Scheduled, info.Retry, info.Archived
		}
		rows = append(rows, row)
	}
	return rows
}
