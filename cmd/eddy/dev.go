package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/dataset"
	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks/secret"
)

// devFlags are the flags of `eddy dev`; their names are a public interface
// (external tests call them).
type devFlags struct {
	data, delimiter, mapping, format string
	sink                             string
	bounded                          bool
	speed                            float64
	window, slide, sessionGap        time.Duration
	threshold                        float64
	maxGap, ooo, lateness            time.Duration
	devices                          string
	partitions                       int
	listen, metricsAddr              string
	timezone                         string
	quiet                            bool
	maxMessageBytes                  int
	maxFuture, idleTimeout           time.Duration
	maxFutureSet                     bool // --max-future given; else the mode's default
}

func newDevCmd() *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the iot-work job on an embedded broker and SQLite, zero setup",
		Long: `Run the main job, iot-work, with everything embedded: an in-process
Kafka-protocol broker with topic iot-topic (12 partitions), a replay of a
dataset into it keyed by device (default: the embedded Aberdeen SDS011 data,
929,022 readings), and an SQLite database as the sink.

With --bounded the job reads to the end of the replayed data, fires every
window and work period, prints a summary and exits 0. Without it the replay
runs at --speed and the job keeps running until Ctrl-C.

Output tables: readings, window_aggregates, work_periods, late_records,
dead_letters (and the view daily_work_time).`,
		Example: `  eddy dev --bounded
  eddy dev --bounded --data readings.csv.gz --delimiter ';' \
      --map pboxid=sensor_id,event_time=timestamp,metric=P1,latitude=lat,longitude=lon \
      --sink sqlite:out.db --window 5m --threshold 40
  eddy dev --speed 3600          # replay one hour of data per second, Ctrl-C to stop
  eddy dev broker --listen 127.0.0.1:9092`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.maxFutureSet = cmd.Flags().Changed("max-future")
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDev(ctx, &f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	def := operators.DefaultConfig()
	fl.StringVar(&f.data, "data", dataset.EmbeddedAberdeen, "dataset to replay: CSV or NDJSON, plain or .gz (default: the embedded Aberdeen data)")
	fl.StringVar(&f.delimiter, "delimiter", "", `CSV field delimiter, one character or "tab" (default "," or ";" for the Aberdeen data)`)
	fl.StringVar(&f.mapping, "map", "", "column mapping pboxid=COL,event_time=COL,metric=COL[,latitude=COL,longitude=COL] (default: identity, or the Aberdeen mapping)")
	fl.StringVar(&f.format, "format", "", "dataset format csv|ndjson (default: from the file name)")
	fl.StringVar(&f.sink, "sink", "sqlite:eddy-dev.db", "sink URL: sqlite:PATH, mysql:DSN, postgres://URL, clickhouse://URL, stdout, ndjson:PATH or discard; rows are upserted")
	fl.BoolVar(&f.bounded, "bounded", false, "read to the end, fire every window and work period, print a summary, exit 0")
	fl.Float64Var(&f.speed, "speed", 0, "replay at this many times real time (event time); 0 = as fast as possible")
	fl.DurationVar(&f.window, "window", def.Window.Size, "tumbling window size (or sliding window size with --slide)")
	fl.DurationVar(&f.slide, "slide", 0, "slide of sliding windows; 0 = tumbling windows")
	fl.DurationVar(&f.sessionGap, "session-gap", 0, "use session windows with this gap instead of tumbling windows")
	fl.Float64Var(&f.threshold, "threshold", def.Threshold, "work threshold: a metric strictly above it is working (a device's threshold overrides it)")
	fl.DurationVar(&f.maxGap, "max-gap", def.MaxGap, "largest event-time gap between consecutive readings of one work period")
	fl.DurationVar(&f.ooo, "out-of-orderness", def.OutOfOrderness, "watermark bound: watermark = max event time seen − this")
	fl.DurationVar(&f.lateness, "allowed-lateness", def.AllowedLateness, "fired windows accept late updates for this long")
	fl.StringVar(&f.devices, "devices", "", "broadcast business data: JSON or YAML map pboxid → {company, site, threshold}")
	fl.IntVar(&f.partitions, "partitions", 12, "partitions of iot-topic on the embedded broker")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:0", "address of the embedded broker (port 0 = any free port)")
	fl.StringVar(&f.metricsAddr, "metrics-addr", defaultMetricsAddr, `serve /metrics on this address ("" = off; the default falls back to a free port when taken)`)
	fl.StringVar(&f.timezone, "timezone", "UTC", "time zone of event_time strings without an offset")
	fl.BoolVar(&f.quiet, "quiet", false, "no live progress lines on stderr")
	fl.IntVar(&f.maxMessageBytes, "max-message-bytes", def.MaxMessageBytes, "largest message value in bytes; bigger ones are dead letters (oversized)")
	fl.DurationVar(&f.maxFuture, "max-future", operators.DefaultMaxFuture, "a reading more than this ahead of the wall clock is a dead letter (future_event_time) and does not move the watermark; 0 = off (default: 1h, or off with --bounded)")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 0, "unbounded only: after this long without records a partition's watermark follows processing time; 0 = off")
	cmd.AddCommand(newDevBrokerCmd())
	cmd.AddCommand(newDevCertsCmd())
	return cmd
}

// spec builds the job spec the flags describe, for a source on brokers:
// the same spec.Spec a YAML spec of eddy run decodes into.
func (f *devFlags) spec(brokers []string) (*spec.Spec, error) {
	var s spec.Spec
	s.Source.Brokers = brokers
	s.Source.Bounded = f.bounded
	dur := func(d time.Duration) *spec.Duration { v := spec.Duration(d); return &v }
	switch {
	case f.sessionGap > 0 && f.slide > 0:
		return nil, errors.New("--slide and --session-gap exclude each other")
	case f.sessionGap > 0:
		s.Window.Kind, s.Window.Gap = string(operators.WindowSession), dur(f.sessionGap)
	case f.slide > 0:
		s.Window.Kind, s.Window.Size, s.Window.Slide = string(operators.WindowSliding), dur(f.window), dur(f.slide)
	default:
		s.Window.Kind, s.Window.Size = string(operators.WindowTumbling), dur(f.window)
	}
	s.WorkPeriods.Threshold = &f.threshold
	s.WorkPeriods.MaxGap = dur(f.maxGap)
	s.EventTime.OutOfOrderness = dur(f.ooo)
	s.EventTime.AllowedLateness = dur(f.lateness)
	if f.maxFutureSet {
		s.EventTime.MaxFuture = dur(f.maxFuture) // else the mode's default
	}
	s.EventTime.IdleTimeout = dur(f.idleTimeout)
	s.Format.TimeZone = f.timezone // "" = UTC
	if f.maxMessageBytes == 0 {
		return nil, errors.New("--max-message-bytes must be > 0, got 0")
	}
	s.Format.MaxMessageBytes = f.maxMessageBytes
	s.Sink = f.sink
	return &s, nil
}

// devFlagOf names the flag of eddy dev that sets each spec field.
var devFlagOf = map[string]string{
	"window.size":                 "--window",
	"window.slide":                "--slide",
	"window.gap":                  "--session-gap",
	"work_periods.threshold":      "--threshold",
	"work_periods.max_gap":        "--max-gap",
	"event_time.out_of_orderness": "--out-of-orderness",
	"event_time.allowed_lateness": "--allowed-lateness",
	"event_time.max_future":       "--max-future",
	"event_time.idle_timeout":     "--idle-timeout",
	"format.time_zone":            "--timezone",
	"format.max_message_bytes":    "--max-message-bytes",
	"sink":                        "--sink",
	"source.brokers":              "--listen",
}

// config converts the flags' spec with the conversion and validation of
// every job spec (spec.LoadValue, as eddy run's spec.Load);
// a mistake is reported under the flag that set the field.
func (f *devFlags) config(brokers []string) (actors.Config, error) {
	s, err := f.spec(brokers)
	if err != nil {
		return actors.Config{}, err
	}
	_, cfg, err := spec.LoadValue(s, spec.Options{Mode: spec.Run})
	var es spec.Errors
	if !errors.As(err, &es) {
		return cfg, err
	}
	msgs := make([]string, len(es))
	for i, e := range es {
		msg := strings.TrimPrefix(e.Reason, "job spec ")
		for field, flag := range devFlagOf {
			if strings.Contains(field, ".") { // not "sink": a word of messages
				msg = strings.ReplaceAll(msg, field, flag)
			}
		}
		if flag, ok := devFlagOf[e.Field]; ok && !strings.HasPrefix(msg, flag) {
			msg = flag + ": " + msg
		}
		msgs[i] = msg
	}
	return cfg, errors.New(strings.Join(msgs, "\n"))
}

// datasetOptions turns --format, --delimiter and --map into reader options.
func datasetOptions(format, delimiter, mapping string) (dataset.Options, error) {
	var o dataset.Options
	o.Format = dataset.Format(format)
	switch {
	case delimiter == "":
	case delimiter == "tab" || delimiter == `\t`:
		o.Delimiter = '\t'
	case len([]rune(delimiter)) == 1:
		o.Delimiter = []rune(delimiter)[0]
	default:
		return o, fmt.Errorf("--delimiter must be one character or \"tab\", got %q", delimiter)
	}
	if mapping != "" {
		m, err := dataset.ParseMapping(mapping)
		if err != nil {
			return o, err
		}
		o.Mapping = m
	}
	return o, nil
}

func runDev(ctx context.Context, f *devFlags, stdout, stderr io.Writer) error {
	// Check the flags before anything starts; the embedded broker's
	// address is known once it listens.
	if _, err := f.config([]string{f.listen}); err != nil {
		return err
	}
	dsOpts, err := datasetOptions(f.format, f.delimiter, f.mapping)
	if err != nil {
		return err
	}
	var devices operators.DeviceLookup
	if f.devices != "" {
		if devices, err = loadDevicesFile(f.devices); err != nil {
			return err
		}
	}
	reader, err := dataset.Open(f.data, dsOpts)
	if err != nil {
		return err
	}
	defer reader.Close()

	bcfg := devbroker.DefaultConfig()
	bcfg.Listen = f.listen
	bcfg.Partitions = f.partitions
	broker, err := devbroker.Start(bcfg)
	if err != nil {
		return err
	}
	defer broker.Close()
	fmt.Fprintf(stdout, "broker: %s, topic iot-topic with %d partitions\n", strings.Join(broker.Addrs(), ","), f.partitions)
	fmt.Fprintf(stdout, "data:   %s (%s, mapping %s)\n", reader.Name(), reader.Format(), reader.Mapping())
	fmt.Fprintf(stdout, "sink:   %s\n", secret.RedactURL(f.sink))

	cfg, err := f.config(broker.Addrs())
	if err != nil {
		return err
	}
	run := &jobRun{
		cfg:         cfg,
		sinkURL:     f.sink,
		devices:     devices,
		metricsAddr: f.metricsAddr,
		out:         stdout,
		log:         slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if !f.quiet {
		run.progress = stderr
	}
	replay := func(ctx context.Context) (dataset.ReplaySummary, error) {
		opts := dataset.ReplayOptions{Speed: f.speed}
		if !f.quiet {
			opts.Progress = func(p dataset.ReplayProgress) {
				fmt.Fprintf(stderr, "replay: %d rows, %d produced (%.0f/s), %d bad rows\n",
					p.Rows, p.Produced, float64(p.Produced)/max(p.Elapsed.Seconds(), 1e-9), p.BadRows)
			}
		}
		sum, err := dataset.Replay(ctx, broker.Addrs(), cfg.Source.Topic, reader, opts)
		printReplaySummary(stdout, sum)
		return sum, err
	}

	if f.bounded {
		// Flink's bounded source reads to the end offsets that exist when
		// the job starts: replay everything first.
		rs, err := replay(ctx)
		if err != nil {
			return err
		}
		run.input = rs.Produced
		_, err = run.run(ctx)
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := replay(gctx)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	})
	g.Go(func() error {
		_, err := run.run(gctx)
		return err
	})
	return g.Wait()
}

func printReplaySummary(w io.Writer, s dataset.ReplaySummary) {
	fmt.Fprintf(w, "replay: %d rows read, %d produced in %s (%.0f msgs/s), %d bad rows skipped\n",
		s.Rows, s.Produced, s.Duration.Round(time.Millisecond), s.MsgsPerSec, s.BadRows)
	for i, line := range s.BadRowLines {
		fmt.Fprintf(w, "  line %d: %s\n", line, s.BadRowErrs[i])
	}
	for _, e := range s.FirstErrors {
		fmt.Fprintf(w, "  produce error: %s\n", e)
	}
}
