// Command eddy-oracle computes, with the reference oracle of package
// tests/oracle, what a bounded run of eddy's iot-work job must produce for a
// dataset file, prints a summary, and — given a sink — diffs the sink's
// contents against it. Exit status: 0 match (or no sink), 1 mismatch,
// 2 usage or I/O error.
//
//	go run ./tests/oracle/cmd/eddy-oracle \
//	    --data ../shared/data/aberdeen-sds011-2019-03-01_2019-05-24.csv.gz --delimiter ';' \
//	    --map pboxid=sensor_id,event_time=timestamp,metric=P1,latitude=lat,longitude=lon \
//	    --sqlite eddy.db
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eddy-iot/eddy/tests/oracle"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("eddy-oracle", flag.ContinueOnError)
	def := oracle.DefaultOptions()
	data := fs.String("data", "", "dataset file: CSV or NDJSON, plain or .gz (required)")
	format := fs.String("format", "", "csv or ndjson (default: from the file name, else csv)")
	delim := fs.String("delimiter", ",", "CSV field delimiter, one character")
	mapping := fs.String("map", "", "column mapping pboxid=COL,event_time=COL,metric=COL,latitude=COL,longitude=COL")
	partitions := fs.Int("partitions", int(def.Partitions), "Kafka partitions of the source topic")
	window := fs.Duration("window", def.Window.Size, "window size (tumbling or sliding)")
	slide := fs.Duration("slide", 0, "window slide: > 0 selects sliding windows")
	session := fs.Duration("session-gap", 0, "session gap: > 0 selects session windows")
	threshold := fs.Float64("threshold", def.Threshold, "work threshold: metric > threshold works")
	maxGap := fs.Duration("max-gap", def.MaxGap, "largest gap between readings of one work period")
	ooo := fs.Duration("out-of-orderness", def.OutOfOrderness, "watermark out-of-orderness bound")
	lateness := fs.Duration("allowed-lateness", def.AllowedLateness, "allowed lateness")
	devices := fs.String("devices", "", "devices file (JSON or YAML): pboxid -> {company, site, threshold}")
	sqlitePath := fs.String("sqlite", "", "compare with this eddy SQLite sink file")
	mysqlDSN := fs.String("mysql", "", "compare with this eddy MySQL sink (go-sql-driver DSN)")
	maxDiffs := fs.Int("max-diffs", 20, "example rows shown per difference category (0 = all)")
	maxBytes := fs.Int("max-message-bytes", oracle.DefaultMaxMessageBytes, "largest message value; bigger ones are dead letters (as eddy dev --max-message-bytes)")
	maxFuture := fs.Duration("max-future", 0, "event times more than this after now are dead letters (as eddy dev --max-future); 0 = off, eddy's bounded default")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "eddy-oracle:", err); return 2 }
	if *data == "" {
		return fail(fmt.Errorf("--data is required"))
	}
	if *sqlitePath != "" && *mysqlDSN != "" {
		return fail(fmt.Errorf("give at most one of --sqlite and --mysql"))
	}

	opts := def
	opts.Format = *format
	if opts.Format == "" {
		name := strings.TrimSuffix(filepath.Base(*data), ".gz")
		opts.Format = oracle.FormatCSV
		if strings.HasSuffix(name, ".ndjson") || strings.HasSuffix(name, ".jsonl") || strings.HasSuffix(name, ".json") {
			opts.Format = oracle.FormatNDJSON
		}
	}
	if utf8.RuneCountInString(*delim) != 1 {
		return fail(fmt.Errorf("--delimiter %q: want exactly one character", *delim))
	}
	opts.Delimiter, _ = utf8.DecodeRuneInString(*delim)
	var err error
	if opts.Mapping, err = oracle.ParseMapping(*mapping); err != nil {
		return fail(err)
	}
	opts.Partitions = int32(*partitions)
	switch {
	case *session > 0:
		opts.Window = oracle.WindowSpec{Kind: oracle.WindowSession, Gap: *session}
	case *slide > 0:
		opts.Window = oracle.WindowSpec{Kind: oracle.WindowSliding, Size: *window, Slide: *slide}
	default:
		opts.Window = oracle.WindowSpec{Kind: oracle.WindowTumbling, Size: *window}
	}
	opts.Threshold, opts.MaxGap, opts.OutOfOrderness, opts.AllowedLateness = *threshold, *maxGap, *ooo, *lateness
	opts.MaxMessageBytes = *maxBytes
	if *maxFuture != 0 {
		opts.MaxFuture, opts.Now = *maxFuture, time.Now()
	}
	if *devices != "" {
		if opts.Devices, err = oracle.LoadDevices(*devices); err != nil {
			return fail(err)
		}
	}

	began := time.Now()
	want, err := oracle.ComputeFile(*data, opts)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("oracle: %s (%.1fs)\n", want.Summary(), time.Since(began).Seconds())
	for i, dl := range want.DeadLetterRecords {
		if i == 5 {
			fmt.Printf("  ... %d more dead letters\n", len(want.DeadLetterRecords)-5)
			break
		}
		fmt.Printf("  dead letter: record %d (partition %d offset %d): %s\n", dl.Line, dl.Partition, dl.Offset, dl.Reason)
	}

	if *sqlitePath == "" && *mysqlDSN == "" {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var got *oracle.Result
	if *sqlitePath != "" {
		got, err = oracle.LoadSQLite(ctx, *sqlitePath)
	} else {
		got, err = oracle.LoadMySQL(ctx, *mysqlDSN)
	}
	if err != nil {
		return fail(err)
	}
	fmt.Printf("sink:   readings=%d late=%d dead_letters=%d windows=%d work_periods=%d\n",
		got.Readings, got.Late, got.DeadLetters, len(got.Windows), len(got.WorkPeriods))
	diff := oracle.Compare(got, want)
	fmt.Print(diff.Format(*maxDiffs))
	if !diff.Equal() {
		return 1
	}
	return 0
}
