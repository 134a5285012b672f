package manifest

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// RunMeta is what the fan-in knows about a run besides its records: the
// spec's identity and size, the budget, and the run's clock. Summarize turns
// it and the records into run.json.
type RunMeta struct {
	Run     string
	Name    string
	SpecKey string
	// Total is the number of tasks the spec expanded to. Zero means "count
	// the records"; records beyond Total (which would be a bug upstream) are
	// still counted.
	Total     int
	BudgetUSD float64
	CreatedAt time.Time
	// FinishedAt is when the run reached its last terminal state. Zero means
	// the latest FinishedAt among the records.
	FinishedAt time.Time
	TraceID    string
	// ModelRefs maps every model id in the spec to its "provider:model"
	// reference. A model listed here appears in the summary even when it has
	// no records; nil lists only the models seen in records.
	ModelRefs map[string]string
}

// Skipped reports whether s is one of the states in which a task was never
// sent to its provider (over budget or canceled).
func (s Status) Skipped() bool { return s == SkippedBudget || s == SkippedCanceled }

// Summarize computes run.json from the run's records. Records are
// deduplicated by task first (see Dedupe), so a redelivered task is counted
// once. Costs are rounded to a millionth of a dollar so sums of prices such
// as 0.04 stay readable. Provider latency statistics cover succeeded,
// non-cached records only: a cache hit made no provider call.
func Summarize(meta RunMeta, records []Record) Summary {
	z := NewSummarizer(meta)
	for _, r := range Dedupe(records) {
		z.Add(r)
	}
	return z.Summary()
}

// Summarizer computes run.json one record at a time, for a fan-in that
// streams records: it keeps counts and one latency per succeeded task, not
// the records. Unlike Summarize it does not deduplicate: add each task once
// (a stream of the store's records/ objects has one per task).
type Summarizer struct {
	meta       RunMeta
	s          Summary
	n          int
	byModel    map[string]*modelAcc
	lastFinish time.Time
}

type modelAcc struct {
	stats     ModelStats
	latencies []int64
}

// NewSummarizer starts a summary of the run meta describes.
func NewSummarizer(meta RunMeta) *Summarizer {
	z := &Summarizer{meta: meta, byModel: make(map[string]*modelAcc, len(meta.ModelRefs))}
	for id := range meta.ModelRefs {
		z.model(id)
	}
	return z
}

func (z *Summarizer) model(id string) *modelAcc {
	a, ok := z.byModel[id]
	if !ok {
		a = &modelAcc{stats: ModelStats{Model: id, ModelRef: z.meta.ModelRefs[id]}}
		z.byModel[id] = a
	}
	return a
}

// Add counts one task's record.
func (z *Summarizer) Add(r Record) {
	z.n++
	a := z.model(r.Model)
	if a.stats.ModelRef == "" {
		a.stats.ModelRef = r.ModelRef
	}
	a.stats.Total++
	a.stats.Attempts += r.Attempts
	a.stats.CostUSD += r.CostUSD
	z.s.CostUSD += r.CostUSD
	switch {
	case r.Status == Succeeded:
		z.s.Succeeded++
		a.stats.Succeeded++
		if !r.Cached {
			a.latencies = append(a.latencies, r.ProviderLatencyMS)
		}
	case r.Status == Failed:
		z.s.Failed++
		a.stats.Failed++
	case r.Status.Skipped():
		z.s.Skipped++
		a.stats.Skipped++
	}
	if r.Cached {
		z.s.Cached++
	}
	if r.FinishedAt.After(z.lastFinish) {
		z.lastFinish = r.FinishedAt
	}
}

// Summary returns run.json for the records added so far.
func (z *Summarizer) Summary() Summary {
	meta := z.meta
	s := z.s
	s.Run, s.Name, s.SpecKey = meta.Run, meta.Name, meta.SpecKey
	s.Total = max(meta.Total, z.n)
	s.BudgetUSD, s.CreatedAt, s.FinishedAt, s.TraceID = meta.BudgetUSD, meta.CreatedAt, meta.FinishedAt, meta.TraceID
	s.Models = []ModelStats{}
	if s.FinishedAt.IsZero() {
		s.FinishedAt = z.lastFinish
	}
	if !s.CreatedAt.IsZero() && s.FinishedAt.After(s.CreatedAt) {
		s.WallS = s.FinishedAt.Sub(s.CreatedAt).Seconds()
	}
	s.CostUSD = roundUSD(s.CostUSD)
	for _, a := range z.byModel {
		m := a.stats
		if m.Total > 0 {
			m.SuccessRate = float64(m.Succeeded) / float64(m.Total)
		}
		lat := slices.Clone(a.latencies)
		slices.Sort(lat)
		m.LatencyP50MS = percentile(lat, 50)
		m.LatencyP95MS = percentile(lat, 95)
		m.LatencyMeanMS = mean(lat)
		m.CostUSD = roundUSD(m.CostUSD)
		s.Models = append(s.Models, m)
	}
	slices.SortFunc(s.Models, func(a, b ModelStats) int { return cmp.Compare(a.Model, b.Model) })
	return s
}

// percentile is the nearest-rank percentile of sorted values: the smallest
// value with at least p percent of the values at or below it. Zero values
// give 0.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// mean is the arithmetic mean rounded to the nearest integer; 0 for no values.
func mean(values []int64) int64 {
	if len(values) == 0 {
		return 0
	}
	var sum float64
	for _, v := range values {
		sum += float64(v)
	}
	return int64(math.Round(sum / float64(len(values))))
}

// roundUSD rounds to a millionth of a dollar, below any provider's price unit.
func roundUSD(v float64) float64 { return math.Round(v*1e6) / 1e6 }
