package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/eddy-iot/eddy/actors/dataset"
	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
)

// replayFlags are the flags of `eddy replay`.
type replayFlags struct {
	brokers, topic                   string
	data, delimiter, mapping, format string
	speed                            float64
	limit                            int64
	quiet                            bool
}

func newReplayCmd() *cobra.Command {
	var f replayFlags
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Replay a dataset file into a Kafka topic as seed-schema JSON",
		Long: `Replay reads a dataset (CSV with a header line, or NDJSON; plain or gzip)
and produces one Kafka message per row to --topic: key = the device id
(pboxid), value = the seed-schema JSON object

  {"event_time":"2019-03-01T00:00:08","metric":11.87,"pboxid":"17079","latitude":57.106,"longitude":-2.088}

Columns are mapped to the seed-schema fields with --map (default: columns
named like the fields). Messages are partitioned by sarama's hash
partitioner, so every reading of a device lands in the same partition, in
file order.

pboxid and event_time are sent as strings; metric, latitude and longitude as
numbers when they are finite decimal numbers, else as the original text (the
job then turns the record into a dead letter). Empty coordinates are left
out. A CSV row with the wrong number of columns is skipped and reported with
its line number.

Without --data, the embedded Aberdeen SDS011 dataset (929,022 readings,
sensor.community, ODbL) is replayed with its own delimiter and mapping.

--speed X paces the messages at X times real time using the event times
(3600 = one hour of data per second); 0 sends as fast as possible. A jump of
more than 24 h of event time between consecutive rows (a gap in the data, or
a bad time such as year 9999) is not waited for: pacing restarts there.

Progress goes to stderr (a bar on a terminal, a line every 5 s otherwise);
the summary goes to stdout.`,
		Example: `  # the embedded Aberdeen data into a local broker (e.g. eddy dev broker)
  eddy replay --brokers 127.0.0.1:9092

  # your own file, semicolon-separated, with a column mapping
  eddy replay --brokers kafka-1:9092,kafka-2:9092 --topic iot-topic \
      --data readings.csv.gz --delimiter ';' \
      --map pboxid=sensor_id,event_time=timestamp,metric=P1,latitude=lat,longitude=lon

  # NDJSON at 60x real time, first 10,000 records only
  eddy replay --data events.jsonl --speed 60 --limit 10000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runReplay(ctx, &f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap addresses, comma-separated host:port")
	fl.StringVar(&f.topic, "topic", "iot-topic", "topic to produce to")
	fl.StringVar(&f.data, "data", dataset.EmbeddedAberdeen, "dataset file: .csv, .ndjson, .jsonl or .json, optionally .gz (default: the embedded Aberdeen data)")
	fl.StringVar(&f.delimiter, "delimiter", "", `CSV field delimiter, one character or "tab" (default "," or ";" for the Aberdeen data)`)
	fl.StringVar(&f.mapping, "map", "", "column mapping pboxid=COL,event_time=COL,metric=COL[,latitude=COL,longitude=COL] (default: identity, or the Aberdeen mapping)")
	fl.StringVar(&f.format, "format", "", "dataset format csv|ndjson (default: from the file name)")
	fl.Float64Var(&f.speed, "speed", 0, "replay at this many times real time (by event time); 0 = as fast as possible")
	fl.Int64Var(&f.limit, "limit", 0, "stop after this many messages; 0 = the whole file")
	fl.BoolVar(&f.quiet, "quiet", false, "no progress on stderr")
	return cmd
}

func runReplay(ctx context.Context, f *replayFlags, stdout, stderr io.Writer) error {
	var brokers []string
	for _, b := range strings.Split(f.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	if len(brokers) == 0 {
		return errors.New("--brokers: give at least one host:port")
	}
	opts, err := datasetOptions(f.format, f.delimiter, f.mapping)
	if err != nil {
		return err
	}
	r, err := dataset.Open(f.data, opts)
	if err != nil {
		return err
	}
	defer r.Close()
	fmt.Fprintf(stdout, "replay: %s (%s, mapping %s) → topic %s on %s\n",
		r.Name(), r.Format(), r.Mapping(), f.topic, strings.Join(brokers, ","))

	ropts := dataset.ReplayOptions{Speed: f.speed, Limit: f.limit}
	var bar *progressbar.ProgressBar
	if !f.quiet {
		_, total := r.Progress()
		rows := int64(-1)
		if f.data == dataset.EmbeddedAberdeen {
			rows = aberdeen.Rows
		}
		if isTerminal(stderr) {
			bar = newReplayBar(stderr, total)
			ropts.ProgressInterval = 200 * time.Millisecond
			ropts.Progress = func(p dataset.ReplayProgress) {
				bar.Describe(progressText(p, rows, false))
				_ = bar.Set64(p.BytesRead)
			}
		} else {
			ropts.ProgressInterval = 5 * time.Second
			ropts.Progress = func(p dataset.ReplayProgress) {
				fmt.Fprintf(stderr, "replay: %s\n", progressText(p, rows, true))
			}
		}
	}
	sum, err := dataset.Replay(ctx, brokers, f.topic, r, ropts)
	if bar != nil {
		_ = bar.Exit() // keeps the bar where it is (Finish would jump to 100% after --limit)
		fmt.Fprintln(stderr)
	}
	printReplaySummary(stdout, sum)
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("replay interrupted after %d messages", sum.Produced)
	}
	return err
}

// newReplayBar is a progress bar over the input bytes (compressed size for
// gzip input, which is what the reader can measure), with the row count and
// rate in its description.
func newReplayBar(w io.Writer, total int64) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSetTheme(progressbar.Theme{Saucer: "=", SaucerHead: ">", SaucerPadding: " ", BarStart: "[", BarEnd: "]"}),
	)
}

// progressText describes a replay in progress: rows, produced, rate, and —
// for the line form — the share of the input done and the time left.
func progressText(p dataset.ReplayProgress, rows int64, withETA bool) string {
	rate := 0.0
	if s := p.Elapsed.Seconds(); s > 0 {
		rate = float64(p.Produced) / s
	}
	s := fmt.Sprintf("%s rows, %s produced, %s msgs/s", group(p.Rows), group(p.Produced), group(int64(rate)))
	if rows > 0 {
		s = fmt.Sprintf("%s/%s rows, %s produced, %s msgs/s", group(p.Rows), group(rows), group(p.Produced), group(int64(rate)))
	}
	if p.BadRows > 0 {
		s += fmt.Sprintf(", %d bad rows", p.BadRows)
	}
	if p.EventTime != "" {
		s += ", at " + p.EventTime
	}
	if withETA && p.BytesTotal > 0 && p.BytesRead > 0 {
		done := float64(p.BytesRead) / float64(p.BytesTotal)
		eta := time.Duration(float64(p.Elapsed) * (1 - done) / done).Round(time.Second)
		s += fmt.Sprintf(" (%.0f%%, ETA %s)", 100*done, eta)
	}
	return s
}

// group formats n with thousands separators: 929022 → "929,022".
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
