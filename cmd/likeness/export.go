package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/likeness-run/likeness/pkg/export"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/store"
)

func (a *app) exportCmd() *cobra.Command {
	var (
		format, out, from, shardSize string
		statuses, models, characters []string
	)
	cmd := &cobra.Command{
		Use:   "export RUN",
		Short: "Hand a run's images on as a dataset: imagefolder, webdataset or jsonl",
		Long: `export copies a run's images and metadata out of its store into --out, a
directory or s3://bucket/prefix (on the LIKENESS_S3_* server):

  imagefolder  images/<character>/<model>/<prompt>/<variant>.<ext> and
               metadata.jsonl (file_name, text = the prompt, character, model,
               seed, tags, cost_usd...): load it with
               datasets.load_dataset("imagefolder", data_dir=DIR)
  webdataset   shard-000000.tar... of <task>.<ext> + <task>.json, each shard
               at most --shard-size
  jsonl        records.jsonl, one manifest record per line, every status

The run is read from --from, the directory 'likeness run --out' wrote, or,
without --from, from the bucket when LIKENESS_S3_ENDPOINT is set. Exporting again writes only
what is missing or different, so an interrupted export is finished by running
it again. A run still working exports the tasks finished so far.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			f, err := export.ParseFormat(format)
			if err != nil {
				return inputErr(fmt.Errorf("--format: %w", err))
			}
			if out == "" {
				return inputErr(errors.New("--out is required: a directory or s3://bucket/prefix"))
			}
			shard, err := humanize.ParseBytes(shardSize)
			if err != nil || shard == 0 || shard > 1<<40 {
				return inputErr(fmt.Errorf("--shard-size %q: want a size such as 512MiB or 1GiB", shardSize))
			}
			opts := export.Options{Run: args[0], Format: f, Models: models, Characters: characters, ShardBytes: int64(shard)}
			for _, s := range statuses {
				opts.Statuses = append(opts.Statuses, manifest.Status(s))
			}
			src, err := a.exportSource(ctx, from, cmd.Flags().Changed("from"))
			if err != nil {
				return err
			}
			dst, local, err := a.exportDest(ctx, out)
			if err != nil {
				return err
			}
			res, err := export.Run(ctx, src, dst, opts)
			if err != nil {
				return exportErr(ctx, err, local)
			}
			if !res.Finalized {
				fmt.Fprintf(a.stderr, "warning: run %s is still working (no manifest yet): exported the %d tasks finished so far; export again when it ends to add the rest\n", opts.Run, res.Records)
			}
			if n := len(res.Extra); n > 0 {
				fmt.Fprintf(a.stderr, "warning: %d files in %s are not part of this export (an earlier export with other filters?) and a dataset loader would read them too, e.g. %s\n",
					n, dst.Location(""), strings.Join(res.Extra[:min(n, 3)], ", "))
			}
			fmt.Fprintf(a.stdout, "exported %d records of run %s as %s to %s: %d files written, %d already there\n",
				res.Records, opts.Run, f, dst.Location(""), res.Written, res.Kept)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&format, "format", "", "imagefolder, webdataset or jsonl (required)")
	fl.StringVar(&out, "out", "", "destination: a directory, or s3://bucket/prefix on the LIKENESS_S3_* server (required)")
	fl.StringVar(&from, "from", envOr(a.getenv, "LIKENESS_OUT", "likeness-out"), "the run's local directory (what `run --out` wrote); without it the bucket is read when LIKENESS_S3_ENDPOINT is set (env LIKENESS_OUT)")
	fl.StringSliceVar(&statuses, "status", nil, "keep tasks in these states: succeeded, failed, skipped_budget, skipped_canceled (default: succeeded; every state for jsonl)")
	fl.StringSliceVar(&models, "model", nil, "keep these model ids (repeat or comma-separate)")
	fl.StringSliceVar(&characters, "character", nil, "keep these character ids (repeat or comma-separate)")
	fl.StringVar(&shardSize, "shard-size", "1GiB", "largest webdataset shard")
	return cmd
}

// exportSource opens the store the run lives in: --from when given, else
// the bucket when LIKENESS_S3_ENDPOINT is set, else --from's default.
func (a *app) exportSource(ctx context.Context, from string, fromSet bool) (export.Source, error) {
	if !fromSet && a.getenv("LIKENESS_S3_ENDPOINT") != "" {
		return a.openStore(ctx, "")
	}
	if fi, err := os.Stat(from); err != nil || !fi.IsDir() {
		return nil, inputErr(fmt.Errorf("--from %s is not a directory: point it at the directory `likeness run --out` wrote, or set LIKENESS_S3_ENDPOINT for the bucket", from))
	}
	d, err := store.NewDir(from)
	if err != nil {
		return nil, inputErr(fmt.Errorf("--from %s: %w", from, err))
	}
	return d, nil
}

// exportDest opens --out: a local directory, or a prefix of a bucket on
// the LIKENESS_S3_* server.
func (a *app) exportDest(ctx context.Context, out string) (export.Dest, bool, error) {
	if !strings.HasPrefix(out, "s3://") {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return nil, true, inputErr(fmt.Errorf("--out: %w", err))
		}
		return export.Dir{Root: out}, true, nil
	}
	u, err := url.Parse(out)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, false, inputErr(fmt.Errorf("--out %q: want s3://bucket/prefix", out))
	}
	endpoint := a.getenv("LIKENESS_S3_ENDPOINT")
	if endpoint == "" {
		return nil, false, inputErr(errors.New("--out s3://...: set LIKENESS_S3_ENDPOINT (and its keys) to say which server holds the bucket"))
	}
	secure := false
	if v := a.getenv("LIKENESS_S3_SECURE"); v != "" {
		if secure, err = strconv.ParseBool(v); err != nil {
			return nil, false, inputErr(fmt.Errorf("LIKENESS_S3_SECURE=%q: want true or false", v))
		}
	}
	s3, err := store.NewS3(store.S3Config{
		Endpoint: endpoint, AccessKey: a.getenv("LIKENESS_S3_ACCESS_KEY"), SecretKey: a.getenv("LIKENESS_S3_SECRET_KEY"),
		Bucket: u.Host, Secure: secure, Region: a.getenv("LIKENESS_S3_REGION"),
	})
	if err != nil {
		return nil, false, inputErr(fmt.Errorf("--out %s: %w", out, err))
	}
	if err := s3.EnsureBucket(ctx); err != nil {
		return nil, false, infraErr(fmt.Errorf("--out %s: object store %s: %w", out, endpoint, err))
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := store.CheckKey(prefix); err != nil {
			return nil, false, inputErr(fmt.Errorf("--out %s: prefix: %w", out, err))
		}
	}
	return export.Bucket{Store: s3, Prefix: prefix, Name: u.Host}, false, nil
}

// exportErr maps an export failure to its exit code: bad input 2, the
// run's store or an S3 destination 3, a local destination that cannot be
// written 2 (fix --out), an interruption 1 (run it again to finish).
func exportErr(ctx context.Context, err error, localDest bool) error {
	var ie *export.InputError
	var se *export.StoreError
	switch {
	case ctx.Err() != nil:
		return &exitError{code: exitFailures, err: fmt.Errorf("interrupted: export the same way again to finish (files written are kept): %w", ctx.Err())}
	case errors.As(err, &ie):
		return inputErr(err)
	case errors.As(err, &se) && se.Dest && localDest:
		return inputErr(fmt.Errorf("--out: %w", err))
	default:
		return infraErr(err)
	}
}
