package scheduler

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"
)

// CronEntry is one periodic run: a spec submitted on a schedule.
type CronEntry struct {
	// Name identifies the entry in logs; default the spec's path.
	Name string
	// Schedule is a cron expression: five fields (minute hour day month
	// weekday), a descriptor (@hourly, @daily, @weekly, @monthly), or
	// "@every 30m"; "CRON_TZ=Europe/Berlin 0 2 * * *" sets the time zone.
	Schedule string
	// Spec is the spec file, read anew at every tick: a spec that changed
	// since the last tick is a new run; an unchanged one is the same run,
	// which the producer recognises and neither enqueues nor pays twice.
	Spec string
	// Line is the entry's line in its cron file, for messages; 0 if none.
	Line int
}

// cronParser reads the schedules CronEntry documents.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCronFile reads a cron file:
//
//	entries:
//	  - name: nightly-sheet        # optional
//	    schedule: "0 2 * * *"
//	    spec: specs/sheet.yaml     # relative to the cron file
//
// Every problem is reported with file:line, all at once.
func ParseCronFile(file string, data []byte) ([]CronEntry, error) {
	var doc struct {
		Entries []yaml.Node `yaml:"entries"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Entries) == 0 {
		return nil, fmt.Errorf("%s: no entries (want entries: [{schedule: \"0 2 * * *\", spec: path/to/spec.yaml}])", file)
	}
	var errs []error
	var entries []CronEntry
	for i, n := range doc.Entries {
		var e struct {
			Name     string `yaml:"name"`
			Schedule string `yaml:"schedule"`
			Spec     string `yaml:"spec"`
		}
		at := fmt.Sprintf("%s:%d: entries[%d]", file, n.Line, i)
		if n.Kind != yaml.MappingNode {
			errs = append(errs, fmt.Errorf("%s: must be a mapping with schedule and spec", at))
			continue
		}
		unknown := false
		for k := 0; k+1 < len(n.Content); k += 2 {
			if key := n.Content[k]; !slices.Contains([]string{"name", "schedule", "spec"}, key.Value) {
				errs = append(errs, fmt.Errorf("%s:%d: entries[%d].%s: unknown field (allowed: name, schedule, spec)", file, key.Line, i, key.Value))
				unknown = true
			}
		}
		if err := n.Decode(&e); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
			continue
		}
		if unknown {
			continue
		}
		if strings.TrimSpace(e.Spec) == "" {
			errs = append(errs, fmt.Errorf("%s.spec: required (the spec file to submit)", at))
		}
		if _, err := cronParser.Parse(e.Schedule); err != nil {
			errs = append(errs, fmt.Errorf("%s.schedule: %q: %w", at, e.Schedule, err))
		}
		path := e.Spec
		if path != "" && !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(file), path)
		}
		entries = append(entries, CronEntry{Name: cmp.Or(e.Name, e.Spec), Schedule: e.Schedule, Spec: path, Line: n.Line})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return entries, nil
}

// SubmitFunc submits the spec at path, as `likeness submit` does.
type SubmitFunc func(ctx context.Context, path string) (*Submission, error)

// Cron submits specs on their schedules until its context ends. A tick that
// fails (a spec that no longer loads, Redis away) is logged and the next
// tick tries again; a tick still running when the next is due is skipped.
type Cron struct {
	entries []CronEntry
	submit  SubmitFunc
	log     *slog.Logger
}

// NewCron checks every schedule and returns a Cron. log nil means
// slog.Default().
func NewCron(entries []CronEntry, submit SubmitFunc, log *slog.Logger) (*Cron, error) {
	if log == nil {
		log = slog.Default()
	}
	for i, e := range entries {
		if _, err := cronParser.Parse(e.Schedule); err != nil {
			return nil, fmt.Errorf("cron entry %d (%s): schedule %q: %w", i, e.Name, e.Schedule, err)
		}
	}
	return &Cron{entries: entries, submit: submit, log: log}, nil
}

// Run fires the entries until ctx ends, then waits for submits in flight.
func (c *Cron) Run(ctx context.Context) error {
	r := cron.New(cron.WithParser(cronParser), cron.WithChain(cron.SkipIfStillRunning(cronLogger{c.log})))
	for _, e := range c.entries {
		if _, err := r.AddFunc(e.Schedule, func() { c.fire(ctx, e) }); err != nil {
			return fmt.Errorf("cron entry %s: %w", e.Name, err)
		}
		c.log.InfoContext(ctx, "cron entry scheduled", "entry", e.Name, "schedule", e.Schedule, "spec", e.Spec)
	}
	r.Start()
	<-ctx.Done()
	<-r.Stop().Done()
	return nil
}

// fire submits one entry's spec.
func (c *Cron) fire(ctx context.Context, e CronEntry) {
	sub, err := c.submit(ctx, e.Spec)
	switch {
	case err != nil:
		c.log.ErrorContext(ctx, "cron submit failed; the next tick tries again", "entry", e.Name, "spec", e.Spec, "err", err)
	case sub.Existing:
		c.log.InfoContext(ctx, "cron: spec unchanged since its run was submitted; nothing enqueued", "entry", e.Name, "run_id", sub.RunID)
	default:
		c.log.InfoContext(ctx, "cron: run submitted", "entry", e.Name, "run_id", sub.RunID, "tasks", sub.Tasks, "enqueued", sub.Enqueued)
	}
}

// cronLogger routes robfig/cron's messages to slog.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.log.Debug("cron: "+msg, kv...) }
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append(kv, "err", err)...)
}
