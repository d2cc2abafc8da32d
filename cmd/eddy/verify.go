package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/dataset"
	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks/secret"
)

// errMismatch is returned by eddy verify when the sink differs from the
// oracle (exit status 1, after the difference is printed).
var errMismatch = errors.New("verify: the sink differs from the oracle")

// verifyFlags are the flags of `eddy verify`.
type verifyFlags struct {
	job, data, format, delimiter, mapping string
	devices, sink                         string
	limit                                 int64
	partitions                            int
	maxDiffs                              int
	wait                                  time.Duration
}

func newVerifyCmd() *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify --job FILE [--data FILE]",
		Short: "Compare a job's SQL sink with an independent batch computation of the job",
		Long: `Verify recomputes what a bounded run of the job must leave in its sink with
eddy's reference oracle — a deliberately simple batch computation written from
the job's contract that shares no code with the stream processor — and
compares the sink with it row by row: the counts of readings, late records and
dead letters, and every window aggregate and work period (floats to a relative
1e-9).

The job's parameters (window, work threshold and max gap, out-of-orderness,
allowed lateness, max message bytes, max future, broadcast.devices_file, sink)
come from the spec; the input is the dataset file the job's topic was replayed
from, with the replay's --delimiter/--map/--limit (without --data: the embedded
Aberdeen data, as eddy replay). A spec with source.end_offsets verifies the
first sum(end_offsets) records, and checks that they are what the job read.

The sink is sqlite:PATH, mysql:DSN, postgres://URL or clickhouse://URL
(read with FINAL): --sink, else the spec's first SQL sink.
Device data set through the cluster API (eddy ctl devices import FILE) is
given with --devices FILE.

Prints a summary and, when they differ, the missing/extra/differing counts
per table and the first --max-diffs rows of each. Exit status 0 only when the
sink equals the oracle; 1 on a difference or an error. With --wait D the sink
is read again every 2 s until it matches or D has passed (a job still
finishing).`,
		Example: `  # after eddy run --job job.yaml --bounded over the embedded data
  eddy verify --job job.yaml

  # your own replayed file, a MySQL sink, the devices of the cluster
  eddy verify --job iot-work.yaml --data readings.csv.gz --delimiter ';' \
      --map pboxid=sensor_id,event_time=timestamp,metric=P1 \
      --devices devices.yaml --sink 'mysql:eddy:secret@tcp(db:3306)/eddy'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runVerify(ctx, &f, cmd.OutOrStdout())
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// register adds the flags of eddy verify (also eddy chaos's) to fl.
func (f *verifyFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.job, "job", "", "job spec file (YAML, as for eddy run or eddy ctl job submit); required")
	fl.StringVar(&f.data, "data", dataset.EmbeddedAberdeen, "dataset file replayed into the job's topic: .csv, .ndjson, .jsonl or .json, optionally .gz (default: the embedded Aberdeen data)")
	fl.StringVar(&f.format, "format", "", "dataset format csv|ndjson (default: from the file name)")
	fl.StringVar(&f.delimiter, "delimiter", "", `CSV field delimiter as given to eddy replay: one character or "tab" (default "," or ";" for the Aberdeen data)`)
	fl.StringVar(&f.mapping, "map", "", "column mapping as given to eddy replay (default: identity, or the Aberdeen mapping)")
	fl.Int64Var(&f.limit, "limit", -1, "verify the first N records, as eddy replay --limit; 0 = the whole file (default: sum of source.end_offsets, else 0)")
	fl.IntVar(&f.partitions, "partitions", 0, "partitions of the source topic (default: the partitions of source.end_offsets, else 12)")
	fl.StringVar(&f.devices, "devices", "", "devices file (JSON or YAML: pboxid → {company, site, threshold}); default: the spec's broadcast.devices_file")
	fl.StringVar(&f.sink, "sink", "", "sink to read: sqlite:PATH, mysql:DSN, postgres://URL or clickhouse://URL (default: the spec's first SQL sink)")
	fl.IntVar(&f.maxDiffs, "max-diffs", 20, "example rows shown per difference category; 0 = all")
	fl.DurationVar(&f.wait, "wait", 0, "re-read the sink every 2s until it matches or this much time has passed; 0 = read once")
}

func runVerify(ctx context.Context, f *verifyFlags, stdout io.Writer) error {
	if f.job == "" {
		return errors.New("verify: --job is required")
	}
	if f.maxDiffs < 0 || f.wait < 0 || f.partitions < 0 || f.limit < -1 {
		return errors.New("verify: --max-diffs, --wait, --partitions and --limit must be >= 0")
	}
	b, err := os.ReadFile(f.job)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	// Run: the most permissive mode; eddy verify reads the specs of both.
	js, cfg, err := spec.Load(b, spec.Options{Mode: spec.Run})
	if err != nil {
		return err
	}
	opts, err := verifyOptions(f, js, &cfg)
	if err != nil {
		return err
	}
	sinkURL := f.sink
	if sinkURL == "" {
		for _, u := range append([]string{js.Sink}, js.Sinks...) {
			if isSQLSink(u) {
				sinkURL = u
				break
			}
		}
		if sinkURL == "" {
			return errors.New("verify: the spec has no sqlite:, mysql:, postgres:// or clickhouse:// sink; give --sink")
		}
	}
	load, err := sinkLoader(sinkURL)
	if err != nil {
		return err
	}

	began := time.Now()
	want, err := computeOracle(f.data, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "oracle: %s (%.1fs)\n", want.Summary(), time.Since(began).Seconds())
	if ends := js.Source.EndOffsets; len(ends) > 0 {
		for p, n := range ends {
			if p < 0 || int(p) >= len(want.PartitionRecords) || want.PartitionRecords[p] != n {
				return fmt.Errorf("verify: source.end_offsets %v are not the first %d records of %s over %d partitions (%v): give --limit and --partitions as replayed",
					ends, opts.Limit, dataName(f.data), opts.Partitions, want.PartitionRecords)
			}
		}
	}
	deadline := time.Now().Add(f.wait)
	for {
		got, err := load(ctx)
		if err != nil {
			return err
		}
		diff := oracle.Compare(got, want)
		if diff.Equal() || !time.Now().Before(deadline) {
			fmt.Fprintf(stdout, "sink:   %s readings=%d late=%d dead_letters=%d windows=%d work_periods=%d\n",
				secret.RedactURL(sinkURL), got.Readings, got.Late, got.DeadLetters, len(got.Windows), len(got.WorkPeriods))
			fmt.Fprint(stdout, diff.Format(f.maxDiffs))
			if !diff.Equal() {
				return errMismatch
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// verifyOptions maps the job's configuration and the replay's flags to the
// oracle's options.
func verifyOptions(f *verifyFlags, js *spec.Spec, cfg *actors.Config) (oracle.Options, error) {
	opts := oracle.DefaultOptions()
	if f.data == dataset.EmbeddedAberdeen {
		opts = oracle.AberdeenOptions()
	}
	switch f.format {
	case "":
		if f.data != dataset.EmbeddedAberdeen {
			name := strings.TrimSuffix(filepath.Base(f.data), ".gz")
			for _, ext := range []string{".ndjson", ".jsonl", ".json"} {
				if strings.HasSuffix(name, ext) {
					opts.Format = oracle.FormatNDJSON
				}
			}
		}
	case oracle.FormatCSV, oracle.FormatNDJSON:
		opts.Format = f.format
	default:
		return opts, fmt.Errorf("verify: --format %q: want csv or ndjson", f.format)
	}
	switch {
	case f.delimiter == "":
	case f.delimiter == "tab" || f.delimiter == `\t`:
		opts.Delimiter = '\t'
	case utf8.RuneCountInString(f.delimiter) == 1:
		opts.Delimiter, _ = utf8.DecodeRuneInString(f.delimiter)
	default:
		return opts, fmt.Errorf("verify: --delimiter must be one character or \"tab\", got %q", f.delimiter)
	}
	if f.mapping != "" {
		m, err := oracle.ParseMapping(f.mapping)
		if err != nil {
			return opts, err
		}
		opts.Mapping = m
	}
	ends := js.Source.EndOffsets
	opts.Partitions = 12
	if f.partitions > 0 {
		opts.Partitions = int32(f.partitions)
	} else if len(ends) > 0 {
		opts.Partitions = int32(len(ends))
	}
	opts.Limit = max(f.limit, 0)
	if f.limit < 0 {
		for _, n := range ends {
			opts.Limit += n
		}
	}

	op := &cfg.Operators
	if op.Location != nil && op.Location != time.UTC && op.Location.String() != "UTC" {
		return opts, fmt.Errorf("verify: format.time_zone %s: the oracle computes UTC event times only", op.Location)
	}
	switch op.Window.Kind {
	case operators.WindowSliding:
		opts.Window = oracle.WindowSpec{Kind: oracle.WindowSliding, Size: op.Window.Size, Slide: op.Window.Slide}
	case operators.WindowSession:
		opts.Window = oracle.WindowSpec{Kind: oracle.WindowSession, Gap: op.Window.Gap}
	default:
		opts.Window = oracle.WindowSpec{Kind: oracle.WindowTumbling, Size: op.Window.Size}
	}
	opts.Threshold, opts.MaxGap = op.Threshold, op.MaxGap
	opts.OutOfOrderness, opts.AllowedLateness = op.OutOfOrderness, op.AllowedLateness
	opts.MaxMessageBytes = op.MaxMessageBytes
	if op.MaxFuture > 0 {
		opts.MaxFuture, opts.Now = op.MaxFuture, time.Now()
	}
	devices := f.devices
	if devices == "" {
		devices = js.Broadcast.DevicesFile
	}
	if devices != "" {
		d, err := oracle.LoadDevices(devices)
		if err != nil {
			return opts, err
		}
		opts.Devices = d
	}
	return opts, opts.Validate()
}

// computeOracle runs the oracle over the dataset file, or over the embedded
// Aberdeen data.
func computeOracle(data string, opts oracle.Options) (*oracle.Result, error) {
	if data == dataset.EmbeddedAberdeen {
		return oracle.Compute(aberdeen.Open(), opts)
	}
	return oracle.ComputeFile(data, opts)
}

func dataName(data string) string {
	if data == dataset.EmbeddedAberdeen {
		return "the embedded Aberdeen data"
	}
	return data
}

// isSQLSink reports whether url names a sink verify can read.
func isSQLSink(url string) bool {
	for _, p := range []string{"sqlite:", "mysql:", "postgres://", "postgresql://", "clickhouse://"} {
		if strings.HasPrefix(url, p) {
			return true
		}
	}
	return false
}

// sinkLoader returns the reader of a sqlite:PATH, mysql:DSN,
// postgres://URL or clickhouse://URL sink.
func sinkLoader(url string) (func(context.Context) (*oracle.Result, error), error) {
	scheme, rest, _ := strings.Cut(url, ":")
	rest = strings.TrimPrefix(rest, "//")
	switch {
	case scheme == "sqlite" && rest != "":
		return func(ctx context.Context) (*oracle.Result, error) { return oracle.LoadSQLite(ctx, rest) }, nil
	case scheme == "mysql" && rest != "":
		return func(ctx context.Context) (*oracle.Result, error) { return oracle.LoadMySQL(ctx, rest) }, nil
	case (scheme == "postgres" || scheme == "postgresql") && strings.HasPrefix(url, scheme+"://") && rest != "":
		return func(ctx context.Context) (*oracle.Result, error) { return oracle.LoadPostgres(ctx, url) }, nil
	case scheme == "clickhouse" && strings.HasPrefix(url, "clickhouse://") && rest != "":
		return func(ctx context.Context) (*oracle.Result, error) { return oracle.LoadClickHouse(ctx, url) }, nil
	}
	return nil, fmt.Errorf("verify: sink %q: want sqlite:PATH, mysql:DSN, postgres://URL or clickhouse://URL", secret.RedactURL(url))
}
