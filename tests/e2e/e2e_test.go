// Package e2e runs the eddy binary end to end — embedded broker, replay,
// partition actors, sink — and checks the sink contents against the
// independent batch computation of cmd/eddy/oracle, exactly.
package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/tests/chtest"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
	"github.com/eddy-iot/eddy/tests/pgtest"
)

var (
	seedFlag = flag.Uint64("seed", 0, "seed of the randomised datasets (0 = time-based; printed)")
	eddyBin  string
)

func TestMain(m *testing.M) { harness.Main(m, &eddyBin) }

// runDev runs `eddy dev --bounded` with args and returns its stdout.
func runDev(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	all := append([]string{"dev", "--bounded", "--quiet", "--metrics-addr", ""}, args...)
	cmd := exec.CommandContext(ctx, eddyBin, all...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("eddy %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(all, " "), err, stdout.String(), stderr.String())
	}
	t.Logf("eddy %s (%s):\n%s", strings.Join(all, " "), time.Since(start).Round(time.Millisecond), stdout.String())
	return stdout.String()
}

// summaryCount reads "  NAME   N" from the summary eddy dev prints.
func summaryCount(t *testing.T, out, name string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + `\s+(\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("summary has no %q line:\n%s", name, out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

func compare(t *testing.T, got, want *oracle.Result) {
	t.Helper()
	if d := oracle.Compare(got, want); !d.Equal() {
		t.Fatalf("sink differs from the oracle:\n%s", d.Format(10))
	}
	t.Logf("match: %d readings, %d late, %d dead letters, %d windows, %d work periods",
		want.Readings, want.Late, want.DeadLetters, len(want.Windows), len(want.WorkPeriods))
}

func loadSQLite(t *testing.T, path string) *oracle.Result {
	t.Helper()
	got, err := oracle.LoadSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestAberdeenBounded is the README's run command on the real data: all
// 929,022 readings, and every window aggregate and work period equal to the
// independent batch computation.
func TestAberdeenBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 929,022 records")
	}
	db := filepath.Join(t.TempDir(), "aberdeen.db")
	out := runDev(t, "--sink", "sqlite:"+db)

	want, err := oracle.Compute(aberdeen.Open(), oracle.AberdeenOptions())
	if err != nil {
		t.Fatal(err)
	}
	if want.Records != aberdeen.Rows {
		t.Fatalf("oracle read %d records, want %d", want.Records, aberdeen.Rows)
	}
	if got := summaryCount(t, out, "input"); got != aberdeen.Rows {
		t.Fatalf("summary input %d, want %d", got, aberdeen.Rows)
	}
	if v, l, d := summaryCount(t, out, "valid (on time)"), summaryCount(t, out, "late"), summaryCount(t, out, "dead letters"); v+l+d != aberdeen.Rows || v != want.Readings || d != want.DeadLetters {
		t.Fatalf("summary valid %d late %d dead letters %d; oracle %d %d %d", v, l, d, want.Readings, want.Late, want.DeadLetters)
	}
	if got := summaryCount(t, out, "work periods"); got != int64(len(want.WorkPeriods)) {
		t.Fatalf("summary work periods %d, oracle %d", got, len(want.WorkPeriods))
	}
	compare(t, loadSQLite(t, db), want)
}

// TestPostgresAberdeenMatchesOracle is the README's run command on the real
// data into PostgreSQL (a postgres:// sink): all 929,022 records, and every
// window aggregate and work period equal to the independent batch
// computation.
func TestPostgresAberdeenMatchesOracle(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 929,022 records")
	}
	url := pgtest.URL(t)
	runDev(t, "--sink", url)
	want, err := oracle.Compute(aberdeen.Open(), oracle.AberdeenOptions())
	if err != nil {
		t.Fatal(err)
	}
	got, err := oracle.LoadPostgres(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	compare(t, got, want)
}

// TestClickHouseAberdeenMatchesOracle is the README's run command on the
// real data into ClickHouse (a clickhouse:// sink): all 929,022 records,
// and every window aggregate and work period, read with FINAL, equal to the
// independent batch computation.
func TestClickHouseAberdeenMatchesOracle(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 929,022 records")
	}
	url := chtest.URL(t)
	runDev(t, "--sink", url)
	want, err := oracle.Compute(aberdeen.Open(), oracle.AberdeenOptions())
	if err != nil {
		t.Fatal(err)
	}
	got, err := oracle.LoadClickHouse(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	compare(t, got, want)
}

// synthetic writes a seeded random dataset: several devices, readings in
// event-time order with jitter inside and far beyond the out-of-orderness
// bound, metrics around the threshold, some non-numeric or empty metrics,
// missing positions, and rows with a wrong column count.
func synthetic(rng *rand.Rand, n int, delim string, gz bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n", strings.Join([]string{"box", "when", "value", "lat", "lon", "extra"}, delim))
	base := time.Date(2024, 2, 28, 23, 0, 0, 0, time.UTC)
	devices := []string{"d1", "d2", "d3", "d4", "d5", "d6", "d7", "1234"}
	clock := base
	for i := 0; i < n; i++ {
		clock = clock.Add(time.Duration(rng.IntN(40_000)) * time.Millisecond)
		ts := clock
		switch r := rng.IntN(100); {
		case r < 10: // out of order within a few seconds
			ts = ts.Add(-time.Duration(rng.IntN(8000)) * time.Millisecond)
		case r < 13: // far out of order: late unless allowed lateness covers it
			ts = ts.Add(-time.Duration(rng.IntN(1800)) * time.Second)
		}
		metric := strconv.FormatFloat(20+rng.Float64()*60, 'f', rng.IntN(3), 64)
		switch r := rng.IntN(200); {
		case r == 0:
			metric = "n/a"
		case r == 1:
			metric = ""
		case r == 2:
			metric = "50" // exactly at the default threshold
		}
		lat, lon := strconv.FormatFloat(57+rng.Float64(), 'f', 3, 64), strconv.FormatFloat(-2-rng.Float64(), 'f', 3, 64)
		if rng.IntN(10) == 0 {
			lat, lon = "", ""
		}
		layout := "2006-01-02 15:04:05"
		if rng.IntN(4) == 0 {
			layout = "2006-01-02T15:04:05.000"
		}
		row := []string{devices[rng.IntN(len(devices))], ts.Format(layout), metric, lat, lon, "x"}
		if rng.IntN(300) == 0 {
			row = row[:4] // wrong column count: skipped by the replayer
		}
		fmt.Fprintf(&b, "%s\n", strings.Join(row, delim))
	}
	if !gz {
		return b.Bytes()
	}
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write(b.Bytes())
	w.Close()
	return z.Bytes()
}

func seed(t *testing.T) uint64 {
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed=%d)", s, s)
	return s
}

// TestSyntheticFlagsMatchOracle runs `eddy dev --bounded` over seeded
// random data with other delimiters, mappings, window kinds, thresholds,
// gaps, out-of-orderness and allowed lateness, and compares every window
// aggregate, work period and count with the oracle.
func TestSyntheticFlagsMatchOracle(t *testing.T) {
	s := seed(t)
	cases := []struct {
		name   string
		delim  string
		gz     bool
		flags  []string
		window oracle.WindowSpec
		tune   func(*oracle.Options)
	}{
		{name: "tumbling-5m-lateness", delim: "|", flags: []string{"--window", "5m", "--threshold", "40", "--max-gap", "3m", "--allowed-lateness", "10m"},
			window: oracle.WindowSpec{Kind: oracle.WindowTumbling, Size: 5 * time.Minute},
			tune: func(o *oracle.Options) {
				o.Threshold = 40
				o.MaxGap = 3 * time.Minute
				o.AllowedLateness = 10 * time.Minute
			}},
		{name: "sliding-gz", delim: ";", gz: true, flags: []string{"--window", "10m", "--slide", "2m", "--out-of-orderness", "30s"},
			window: oracle.WindowSpec{Kind: oracle.WindowSliding, Size: 10 * time.Minute, Slide: 2 * time.Minute},
			tune:   func(o *oracle.Options) { o.OutOfOrderness = 30 * time.Second }},
		// Session windows without allowed lateness: a late merge would move a
		// fired session's start and leave its old row (see operators docs).
		{name: "session", delim: ",", flags: []string{"--session-gap", "2m", "--partitions", "3"},
			window: oracle.WindowSpec{Kind: oracle.WindowSession, Gap: 2 * time.Minute},
			tune:   func(o *oracle.Options) { o.Partitions = 3 }},
		{name: "tumbling-no-ooo", delim: "\t", flags: []string{"--window", "1m", "--out-of-orderness", "0s", "--partitions", "1"},
			window: oracle.WindowSpec{Kind: oracle.WindowTumbling, Size: time.Minute},
			tune:   func(o *oracle.Options) { o.OutOfOrderness = 0; o.Partitions = 1 }},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(s, uint64(i)))
			dir := t.TempDir()
			name := "data.csv"
			if c.gz {
				name += ".gz"
			}
			data := filepath.Join(dir, name)
			if err := os.WriteFile(data, synthetic(rng, 4000, c.delim, c.gz), 0o644); err != nil {
				t.Fatal(err)
			}
			const mapping = "pboxid=box,event_time=when,metric=value,latitude=lat,longitude=lon"
			db := filepath.Join(dir, "out.db")
			delim := c.delim
			if delim == "\t" {
				delim = "tab"
			}
			runDev(t, append([]string{"--data", data, "--delimiter", delim, "--map", mapping, "--sink", "sqlite:" + db}, c.flags...)...)

			opts := oracle.DefaultOptions()
			opts.Delimiter = []rune(c.delim)[0]
			opts.Mapping, _ = oracle.ParseMapping(mapping)
			opts.Window = c.window
			c.tune(&opts)
			want, err := oracle.ComputeFile(data, opts)
			if err != nil {
				t.Fatal(err)
			}
			if want.Late == 0 {
				t.Fatalf("the dataset has no late record: the case tests nothing of lateness")
			}
			compare(t, loadSQLite(t, db), want)
		})
	}
}

// TestMySQLSinkMatchesOracle runs the job into a real MariaDB with a
// devices file (enrichment and a per-device threshold) and compares.
func TestMySQLSinkMatchesOracle(t *testing.T) {
	dsn := mariadbtest.DSN(t)
	s := seed(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(data, synthetic(rand.New(rand.NewPCG(s, 99)), 3000, ",", false), 0o644); err != nil {
		t.Fatal(err)
	}
	devices := filepath.Join(dir, "devices.yaml")
	if err := os.WriteFile(devices, []byte("d1: {company: acme, site: north, threshold: 30}\nd2: {company: acme, site: south}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const mapping = "pboxid=box,event_time=when,metric=value,latitude=lat,longitude=lon"
	runDev(t, "--data", data, "--map", mapping, "--devices", devices, "--sink", "mysql:"+dsn)
	// Twice: a replay upserts, it never duplicates.
	runDev(t, "--data", data, "--map", mapping, "--devices", devices, "--sink", "mysql:"+dsn)

	opts := oracle.DefaultOptions()
	opts.Mapping, _ = oracle.ParseMapping(mapping)
	var err error
	if opts.Devices, err = oracle.LoadDevices(devices); err != nil {
		t.Fatal(err)
	}
	want, err := oracle.ComputeFile(data, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := oracle.LoadMySQL(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	compare(t, got, want)
}
