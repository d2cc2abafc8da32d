package operators

import (
	"bufio"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

var aberdeenFlag = flag.String("aberdeen", "", "path of aberdeen-sds011-*.csv.gz; runs TestAberdeen")

// TestAberdeen replays the real Aberdeen SDS011 data (see
// /work/shared/data/README.md) as seed-schema JSON through one partition and
// compares the result with the batch reference. Run with
//
//	go test ./operators/ -run Aberdeen -aberdeen=/path/to/aberdeen-sds011-2019-03-01_2019-05-24.csv.gz
func TestAberdeen(t *testing.T) {
	if *aberdeenFlag == "" {
		t.Skip("no -aberdeen data file given")
	}
	f, err := os.Open(*aberdeenFlag)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Scan() // header
	var msgs [][]byte
	for sc.Scan() {
		c := strings.Split(sc.Text(), ";")
		metric := c[6]
		if metric == "" {
			metric = `""`
		}
		msgs = append(msgs, fmt.Appendf(nil, `{"event_time":%q,"metric":%s,"pboxid":%q,"latitude":%s,"longitude":%s}`, c[5], metric, c[0], c[3], c[4]))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	p := NewPartition(0, cfg, nil)
	var out Output
	start := time.Now()
	for i, m := range msgs {
		p.Process(int64(i), m, &out)
	}
	p.Finish(&out)
	t.Logf("%d records in %v: %d readings, %d dead letters, %d late, %d windows, %d work periods",
		len(msgs), time.Since(start), len(out.Readings), len(out.DeadLetters), len(out.Late), len(out.Windows), len(out.WorkPeriods))
	if len(out.Readings) != 929021 || len(out.DeadLetters) != 1 || ReasonLabel(out.DeadLetters[0].Reason) != ReasonInvalidMetric {
		t.Fatalf("readings %d, dead letters %+v", len(out.Readings), out.DeadLetters)
	}
	above := 0
	var recs []genRecord
	for _, r := range out.Readings {
		if r.Metric > 50 {
			above++
		}
		recs = append(recs, genRecord{dev: r.PboxID, t: r.EventTime, metric: r.Metric, lat: r.Latitude, lon: r.Longitude})
	}
	if above != 25406 {
		t.Fatalf("%d readings above 50, want 25406", above)
	}
	// The batch reference over the valid readings (offsets renumbered).
	want := batch(cfg, nil, recs)
	if len(want.windows) != len(out.Windows) || len(want.periods) != len(out.WorkPeriods) {
		t.Fatalf("windows %d (batch %d), work periods %d (batch %d)", len(out.Windows), len(want.windows), len(out.WorkPeriods), len(want.periods))
	}
	for _, w := range out.Windows {
		if b := want.windows[wkey{w.PboxID, w.Start}]; !sameWindow(w, b) {
			t.Fatalf("window\n got %+v\nwant %+v", w, b)
		}
	}
}
