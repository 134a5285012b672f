package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/scheduler"
	"github.com/likeness-run/likeness/worker"
)

func (a *app) submitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "submit SPEC",
		Short: "Upload references and enqueue a spec's tasks; print the run id",
		Long: `submit validates SPEC, uploads its references to the bucket, records the run
in Redis and enqueues one task per (character × prompt × model × variant). It
prints the run id on stdout and returns at once; start workers to do the work.
Submitting the identical spec again enqueues nothing and pays for nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSpec(args[0])
			if err != nil {
				return err
			}
			in, err := a.connect(cmd.Context(), connectOpts{needStore: true})
			if err != nil {
				return err
			}
			defer in.Close()
			sub, err := a.submit(cmd.Context(), in, s)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, sub.RunID)
			if !sub.Existing {
				fmt.Fprintf(a.stderr, "submitted %d tasks; follow with: likeness watch %s\n", sub.Tasks, sub.RunID)
			}
			return nil
		},
	}
}

func (a *app) workerCmd() *cobra.Command {
	var (
		concurrency int
		shutdown    time.Duration
		metricsAddr string
		sweepEvery  time.Duration
		refCacheMiB int
		cpuProfile  string
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Consume tasks from the shared queue (start as many as you like)",
		Long: `worker serves the queues of every provider it has credentials for (the
simulator always) until SIGINT or SIGTERM. On shutdown it stops taking tasks,
lets tasks in flight finish for --shutdown-timeout, and requeues the rest.

Every --sweep-every one worker of the fleet (a Redis lock decides which)
re-finalizes complete runs whose fan-in was lost, so a run always ends
even with no scheduler running.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return inputErr(err)
				}
				defer stop()
			}
			in, err := a.connect(cmd.Context(), connectOpts{needStore: true, waitForStore: true})
			if err != nil {
				return err
			}
			defer in.Close()
			wcfg, err := a.workerConfig(in, concurrency)
			if err != nil {
				return err
			}
			wcfg.ShutdownTimeout = shutdown
			if refCacheMiB <= 0 {
				return inputErr(fmt.Errorf("--ref-cache-mib must be above 0, got %d", refCacheMiB))
			}
			wcfg.RefCacheBytes = int64(refCacheMiB) << 20
			w, err := worker.New(wcfg)
			if err != nil {
				return inputErr(err)
			}
			if metricsAddr != "" {
				mux := http.NewServeMux()
				defer a.mountMetrics(mux, in)()
				go func() {
					if err := a.listenAndServe(cmd.Context(), metricsAddr, mux); err != nil {
						a.log.Error("metrics endpoint", "addr", metricsAddr, "err", err)
					}
				}()
			}
			if err := w.Start(); err != nil {
				return infraErr(err)
			}
			sweeping := a.startSweeps(cmd.Context(), in, wcfg.ID, sweepEvery)
			<-cmd.Context().Done()
			a.log.Info("shutting down: finishing tasks in flight", "timeout", shutdown)
			w.Shutdown()
			<-sweeping
			return nil
		},
	}
	cmd.Flags().DurationVar(&sweepEvery, "sweep-every", 30*time.Second, "how often the fleet looks for complete runs whose fan-in was lost")
	cmd.Flags().IntVar(&refCacheMiB, "ref-cache-mib", 256, "memory for reference images kept between tasks (least recently used first out), in MiB")
	cmd.Flags().IntVar(&concurrency, "concurrency", 8, "tasks worked at once, per provider")
	cmd.Flags().DurationVar(&shutdown, "shutdown-timeout", 30*time.Second, "how long tasks in flight may run after SIGTERM before they are requeued")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", envOr(a.getenv, "LIKENESS_METRICS_ADDR", ""), "serve Prometheus metrics at http://ADDR/metrics (env LIKENESS_METRICS_ADDR); empty: off")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the worker to this file until it stops (go tool pprof FILE)")
	return cmd
}

// startSweeps runs the fleet's sweep loop (see scheduler.Sweeper) until ctx
// ends; the returned channel closes when it has stopped.
func (a *app) startSweeps(ctx context.Context, in *infra, id string, every time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if every <= 0 {
		close(done)
		return done
	}
	q := asynq.NewClient(in.redisOpt)
	insp := asynq.NewInspector(in.redisOpt)
	sw := &scheduler.Sweeper{Runs: in.runs, Queue: q, Inspector: insp, Lock: in.rdb, ID: id, Logger: a.log}
	go func() {
		defer close(done)
		defer q.Close()
		defer insp.Close()
		sw.Loop(ctx, every)
	}()
	return done
}

func (a *app) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status RUN",
		Short: "Print a run's counts, cost and state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := a.connect(cmd.Context(), connectOpts{})
			if err != nil {
				return err
			}
			defer in.Close()
			st, err := in.runs.Get(cmd.Context(), args[0])
			if errors.Is(err, runstate.ErrNotFound) {
				return inputErr(fmt.Errorf("run %s not found", args[0]))
			}
			if err != nil {
				return infraErr(err)
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(statusJSON(st))
			}
			printStatus(a, st)
			return a.printLimits(cmd.Context(), in, st.Models)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) watchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch RUN",
		Short: "Redraw a run's progress until it finishes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := a.connect(cmd.Context(), connectOpts{})
			if err != nil {
				return err
			}
			defer in.Close()
			st, err := a.waitRun(cmd.Context(), in.runs, args[0], true)
			if err != nil {
				return err
			}
			printStatus(a, st)
			if st.Succeeded < st.Total {
				return errRunFailed
			}
			return nil
		},
	}
}

func (a *app) cancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel RUN",
		Short: "Stop a run: tasks not yet started end as skipped_canceled",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := a.connect(cmd.Context(), connectOpts{})
			if err != nil {
				return err
			}
			defer in.Close()
			if err := in.runs.Cancel(cmd.Context(), args[0]); errors.Is(err, runstate.ErrNotFound) {
				return inputErr(fmt.Errorf("run %s not found", args[0]))
			} else if err != nil {
				return infraErr(err)
			}
			fmt.Fprintf(a.stdout, "run %s canceled\n", args[0])
			return nil
		},
	}
}

type runStatusJSON struct {
	Run       string  `json:"run"`
	Name      string  `json:"name"`
	State     string  `json:"state"`
	Total     int     `json:"total"`
	Succeeded int     `json:"succeeded"`
	Failed    int     `json:"failed"`
	Skipped   int     `json:"skipped"`
	Cached    int     `json:"cached"`
	Pending   int     `json:"pending"`
	CostUSD   float64 `json:"cost_usd"`
	BudgetUSD float64 `json:"budget_usd,omitempty"`
	Finalized bool    `json:"finalized"`
	CreatedAt string  `json:"created_at"`
	ElapsedS  float64 `json:"elapsed_s"`
	// ReservedUSD is set aside for provider calls in flight.
	ReservedUSD float64 `json:"reserved_usd"`
	// WaitingOn says what the run waits for, when something is in its way.
	WaitingOn string `json:"waiting_on,omitempty"`
}

func statusJSON(st *runstate.Status) runStatusJSON {
	end := time.Now()
	if !st.FinishedAt.IsZero() {
		end = st.FinishedAt
	}
	return runStatusJSON{
		Run: st.ID, Name: st.Name, State: string(st.State), Total: st.Total,
		Succeeded: st.Succeeded, Failed: st.Failed, Skipped: st.SkippedBudget + st.SkippedCanceled,
		Cached: st.Cached, Pending: st.Total - st.Done(), CostUSD: st.CostUSD, BudgetUSD: st.BudgetUSD,
		Finalized: st.Finalized > 0, CreatedAt: st.CreatedAt.UTC().Format(time.RFC3339),
		ElapsedS: end.Sub(st.CreatedAt).Seconds(), ReservedUSD: st.ReservedUSD,
		WaitingOn: waitingOn(st, 0),
	}
}

func printStatus(a *app, st *runstate.Status) {
	j := statusJSON(st)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "run\t%s (%s)\n", j.Run, j.Name)
	fmt.Fprintf(tw, "state\t%s\n", j.State)
	fmt.Fprintf(tw, "tasks\t%d total · %d succeeded · %d failed · %d skipped · %d pending · %d reused\n",
		j.Total, j.Succeeded, j.Failed, j.Skipped, j.Pending, j.Cached)
	budget := "no budget"
	if j.BudgetUSD > 0 {
		budget = fmt.Sprintf("budget $%.2f", j.BudgetUSD)
	}
	fmt.Fprintf(tw, "cost\t$%.2f (%s)\n", j.CostUSD, budget)
	elapsed := time.Duration(j.ElapsedS * float64(time.Second)).Round(time.Second)
	eta := ""
	if done := st.Done(); done > 0 && j.Pending > 0 {
		eta = fmt.Sprintf(" · ETA %s", time.Duration(float64(elapsed)/float64(done)*float64(j.Pending)).Round(time.Second))
	}
	fmt.Fprintf(tw, "elapsed\t%s%s\n", elapsed, eta)
	if j.WaitingOn != "" {
		fmt.Fprintf(tw, "waiting on\t%s\n", j.WaitingOn)
	}
	tw.Flush()
}

// printLimits shows the fleet-wide limits in force for a run's models and
// their live state: slots in use, cooldown, circuit.
func (a *app) printLimits(ctx context.Context, in *infra, refs []string) error {
	overrides, err := a.limits()
	if err != nil {
		return err
	}
	reg := provider.DefaultRegistry()
	seen := map[string]bool{}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, ref := range refs {
		m, ok := reg.Lookup(ref)
		if !ok {
			continue
		}
		lim := ratelimit.For(m, overrides)
		if seen[lim.Key] {
			continue
		}
		seen[lim.Key] = true
		st, err := in.limiter.State(ctx, lim.Key)
		if err != nil {
			return infraErr(err)
		}
		line := limitsText(provider.Limits{Key: lim.Key, RequestsPerMinute: lim.RequestsPerMinute, Concurrency: lim.Concurrency})
		line += fmt.Sprintf(" · %d in flight now", st.InFlight)
		if d := time.Until(st.CooldownUntil); d > 0 {
			line += fmt.Sprintf(" · cooling down %s", d.Round(time.Second))
		}
		switch {
		case !st.OpenUntil.IsZero():
			line += fmt.Sprintf(" · circuit open %s", time.Until(st.OpenUntil).Round(time.Second))
		case st.Failures > 0:
			line += fmt.Sprintf(" · %d transient failures in a row", st.Failures)
		}
		fmt.Fprintf(tw, "limit\t%s\n", line)
	}
	return tw.Flush()
}

func (a *app) modelsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "models",
		Short: "List the model registry: prices, limits in force and parameters",
		Long:  "models lists every model; `likeness models REF` shows one model's parameters in full.",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			overrides, err := a.limits()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				m, ok := provider.DefaultRegistry().Lookup(args[0])
				if !ok {
					return inputErr(fmt.Errorf("unknown model %q: see `likeness models`", args[0]))
				}
				return a.printModel(m, ratelimit.For(m, overrides), asJSON)
			}
			models := provider.DefaultRegistry().Models()
			for i, m := range models { // show the limits in force
				lim := ratelimit.For(m, overrides)
				models[i].Limits = provider.Limits{Key: lim.Key, RequestsPerMinute: lim.RequestsPerMinute, Concurrency: lim.Concurrency}
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(models)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MODEL\tPRICE/IMAGE\tLATENCY\tLIMITS\tINPAINT\tPARAMETERS")
			for _, m := range models {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Ref, priceText(m.Pricing), m.Latency, limitsText(m.Limits), yesNo(m.Inpainting), paramsText(m.Params))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printModel shows one model in full.
func (a *app) printModel(m provider.Model, lim ratelimit.Limit, asJSON bool) error {
	m.Limits = provider.Limits{Key: lim.Key, RequestsPerMinute: lim.RequestsPerMinute, Concurrency: lim.Concurrency}
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			provider.Model
			Returns string `json:"returns"`
		}{m, m.Returns()})
	}
	fmt.Fprintf(a.stdout, "%s\n  %s\n  price %s · typical latency %s · limits %s · output %s · inpainting %s\n  returns %s\n\n",
		m.Ref, m.Description, priceText(m.Pricing), m.Latency, limitsText(m.Limits), m.Output, yesNo(m.Inpainting), m.Returns())
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARAMETER\tTYPE\tDEFAULT\tALLOWED\tDESCRIPTION")
	for _, p := range m.Params {
		allowed := strings.Join(p.Enum, " ")
		if p.Min != nil || p.Max != nil {
			lo, hi := "", ""
			if p.Min != nil {
				lo = fmt.Sprint(*p.Min)
			}
			if p.Max != nil {
				hi = fmt.Sprint(*p.Max)
			}
			allowed = lo + ".." + hi
		}
		def := ""
		if p.Default != nil {
			def = fmt.Sprint(p.Default)
		}
		desc := p.Description
		if p.Secret {
			desc = "secret: set in the environment, never in a spec. " + desc
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.Type, def, allowed, desc)
	}
	return tw.Flush()
}

func priceText(p provider.Pricing) string {
	if p.ByParam == "" || len(p.Table) == 0 {
		return fmt.Sprintf("$%.3f", p.Base)
	}
	keys := make([]string, 0, len(p.Table))
	for k := range p.Table {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return p.Table[keys[i]] < p.Table[keys[j]] })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s $%.3f", k, p.Table[k]))
	}
	return fmt.Sprintf("%s: %s", p.ByParam, strings.Join(parts, ", "))
}

func limitsText(l provider.Limits) string {
	var parts []string
	if l.RequestsPerMinute > 0 {
		parts = append(parts, fmt.Sprintf("%d req/min", l.RequestsPerMinute))
	}
	if l.Concurrency > 0 {
		parts = append(parts, fmt.Sprintf("%d in flight", l.Concurrency))
	}
	if len(parts) == 0 {
		return "-"
	}
	return l.Key + ": " + strings.Join(parts, ", ")
}

func paramsText(ps []provider.Param) string {
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		n := p.Name
		if p.Required {
			n += "*"
		}
		names = append(names, n)
	}
	return strings.Join(names, " ")
}

func (a *app) estimateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "estimate SPEC",
		Short: "Tasks, cost and time for a spec, before spending anything",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSpec(args[0])
			if err != nil {
				return err
			}
			e := scheduler.EstimateSpec(s)
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MODEL\tTASKS\tCOST\tTIME")
			for _, m := range e.Models {
				fmt.Fprintf(tw, "%s (%s)\t%d\t$%.2f\t%s\n", m.Model, m.Ref, m.Tasks, m.CostUSD, m.Duration.Round(time.Second))
			}
			fmt.Fprintf(tw, "total\t%d\t$%.2f\t%s\n", e.Tasks, e.CostUSD, e.Duration.Round(time.Second))
			if err := tw.Flush(); err != nil {
				return err
			}
			if s.BudgetUSD > 0 && e.CostUSD > s.BudgetUSD {
				fmt.Fprintf(a.stdout, "the estimate exceeds budget_usd $%.2f: tasks past it will be skipped\n", s.BudgetUSD)
			}
			return nil
		},
	}
}

func (a *app) retryCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "retry RUN",
		Short: "Run a run's failed and skipped tasks again",
		Long: `retry puts every task of RUN that failed or was skipped back in the queue
with fresh retry budgets (after a provider outage, or once an account is
topped up: billing stops and a cancel are lifted first). Earlier attempts
stay in each task's history and cost. The run is finalized again when they
end, and that finalization sends its own webhook. Workers must be running
to do the work.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := a.connect(cmd.Context(), connectOpts{needStore: true})
			if err != nil {
				return err
			}
			defer in.Close()
			insp := asynq.NewInspector(in.redisOpt)
			defer insp.Close()
			q := asynq.NewClient(in.redisOpt)
			defer q.Close()
			n, err := scheduler.Retry(cmd.Context(), q, insp, in.runs, in.blobs, args[0])
			if errors.Is(err, runstate.ErrNotFound) {
				return inputErr(fmt.Errorf("run %s not found", args[0]))
			}
			if err != nil {
				return infraErr(err)
			}
			if n == 0 {
				fmt.Fprintf(a.stdout, "run %s has no failed or skipped tasks to retry\n", args[0])
				return nil
			}
			fmt.Fprintf(a.stdout, "%d tasks of run %s back in the queue; follow with: likeness watch %s\n", n, args[0], args[0])
			return nil
		},
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
