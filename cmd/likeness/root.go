package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"

	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/telemetry"
)

// Exit codes, as documented in the README and design.md.
const (
	exitOK       = 0
	exitFailures = 1 // the run finished with failed or skipped tasks
	exitInput    = 2 // bad spec, flags or files; nothing was enqueued
	exitInfra    = 3 // Redis or the object store could not be reached
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func inputErr(err error) error { return &exitError{code: exitInput, err: err} }
func infraErr(err error) error { return &exitError{code: exitInfra, err: err} }

// runFailed is returned when a run ended with tasks that did not succeed.
var errRunFailed = &exitError{code: exitFailures, err: errors.New("run finished with failed or skipped tasks")}

// app holds what every command shares.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	logLevel       string
	log            *slog.Logger
	// tel is OpenTelemetry, configured from the OTEL_* environment.
	tel *telemetry.Telemetry
}

func execute(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if a.tel != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if serr := a.tel.Shutdown(sctx); serr != nil {
			a.log.Warn("flush telemetry", "err", serr)
		}
		cancel()
	}
	if err == nil {
		return exitOK
	}
	var ee *exitError
	code := exitInput // cobra's own errors are flag and argument mistakes
	if errors.As(err, &ee) {
		code = ee.code
	}
	if !errors.Is(err, errRunFailed) {
		fmt.Fprintf(stderr, "likeness: %s\n", indentLines(err.Error()))
	}
	return code
}

// indentLines keeps multi-line messages (one spec error per line) readable.
func indentLines(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "likeness",
		Short:         "Bulk image generation with consistent characters",
		Long:          "likeness fans one spec (characters × prompts × models × variants) out over a queue of workers,\nchecks every output, and stores images, a manifest and a comparison report.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			lvl, err := parseLevel(a.logLevel)
			if err != nil {
				return inputErr(err)
			}
			a.log = newLogger(a.stderr, lvl)
			slog.SetDefault(a.log)
			// Spans and metrics for the console go to stderr, so stdout
			// stays what scripts read (the run id of submit, JSON).
			tel, err := telemetry.Setup(cmd.Context(), telemetry.Config{
				ServiceName: "likeness", Getenv: a.getenv, Logger: a.log, ConsoleWriter: a.stderr,
			})
			if err != nil {
				return inputErr(fmt.Errorf("telemetry (OTEL_* environment): %w", err))
			}
			a.tel = tel
			otel.SetErrorHandler(telemetry.ErrorHandler(a.log))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", envOr(a.getenv, "LIKENESS_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env LIKENESS_LOG_LEVEL)")
	root.AddCommand(a.runCmd(), a.submitCmd(), a.workerCmd(), a.statusCmd(), a.watchCmd(),
		a.cancelCmd(), a.pauseCmd(), a.resumeCmd(), a.retryCmd(), a.schedulerCmd(), a.modelsCmd(), a.estimateCmd(), a.serveCmd(), a.benchCmd(), a.simProviderCmd(), a.exportCmd(), a.cacheCmd())
	return root
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger logs text on a terminal and JSON otherwise, with the trace and
// span ids of the span a record was made in.
func newLogger(w io.Writer, lvl slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: lvl}
	if isTerminal(w) {
		return slog.New(telemetry.LogHandler(slog.NewTextHandler(w, opts)))
	}
	return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, opts)))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// loadSpec loads and validates a spec; every failure is bad input.
func loadSpec(path string) (*spec.Spec, error) {
	s, err := spec.LoadFile(path, nil)
	if err != nil {
		return nil, inputErr(err)
	}
	return s, nil
}
