package oracle

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// t0 is 2019-03-01 00:00:00 UTC in Unix ms; sec(n) is n seconds later.
const t0 = int64(1551398400000)

func sec(n int64) int64 { return t0 + n*1000 }

var nan = math.NaN()

func eqf(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b))
}

func csvOptions() Options {
	o := DefaultOptions()
	o.Partitions = 1
	o.Mapping, _ = ParseMapping("pboxid=id,event_time=ts,metric=val,latitude=lat,longitude=lon")
	return o
}

func mustCompute(t *testing.T, input string, o Options) *Result {
	t.Helper()
	res, err := Compute(strings.NewReader(input), o)
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	return res
}

func checkCounts(t *testing.T, r *Result, records, skipped, readings, late, dead int64) {
	t.Helper()
	got := [5]int64{r.Records, r.Skipped, r.Readings, r.Late, r.DeadLetters}
	want := [5]int64{records, skipped, readings, late, dead}
	if got != want {
		t.Errorf("counts (records, skipped, readings, late, dead letters) = %v, want %v", got, want)
	}
	if r.Readings+r.Late+r.DeadLetters != r.Records {
		t.Errorf("readings %d + late %d + dead letters %d != records %d", r.Readings, r.Late, r.DeadLetters, r.Records)
	}
}

func checkWindows(t *testing.T, got, want []Window) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d windows, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.PboxID != w.PboxID || g.Start != w.Start || g.End != w.End || g.Count != w.Count ||
			!eqf(g.Sum, w.Sum) || !eqf(g.Min, w.Min) || !eqf(g.Max, w.Max) || !eqf(g.Avg, w.Avg) ||
			!eqf(g.Latitude, w.Latitude) || !eqf(g.Longitude, w.Longitude) || g.Company != w.Company || g.Site != w.Site {
			t.Errorf("window %d:\n got  %v\n want %v", i, g, w)
		}
	}
}

func checkPeriods(t *testing.T, got, want []WorkPeriod) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d work periods, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.PboxID != w.PboxID || g.Start != w.Start || g.End != w.End || !eqf(g.DurationS, w.DurationS) ||
			g.Samples != w.Samples || !eqf(g.AvgMetric, w.AvgMetric) || !eqf(g.MaxMetric, w.MaxMetric) ||
			g.Company != w.Company || g.Site != w.Site {
			t.Errorf("work period %d:\n got  %v\n want %v", i, g, w)
		}
	}
}

// handMade exercises, in one partition: an out-of-order record within the
// bound, a late record, a non-numeric metric, a row with the wrong column
// count, a gap of exactly max gap, a metric exactly at the threshold, a
// window whose latest reading has no position, an event-time tie broken by
// offset, and an empty pboxid.
const handMade = `id,ts,val,lat,lon
A,2019-03-01 00:00:10,60,57.1,-2.1
A,2019-03-01T00:00:50,40,,
A,2019-03-01 00:00:30,70,57.2,-2.2
A,2019-03-01 00:00:46,55,57.3,-2.3
A,2019-03-01 00:01:05,80,57.4,-2.4
bad,row
A,2019-03-01 00:01:10,abc,57.4,-2.4
A,2019-03-01 00:11:05,90,57.5,-2.5
A,2019-03-01 00:21:06,95,,
A,2019-03-01 00:22:00,50,57.6,-2.6
A,2019-03-01 00:22:30,51,57.6,-2.6
B,2019-03-01 00:22:40,10,1,1
B,2019-03-01 00:22:40,20,2,2
,2019-03-01 00:22:40,20,2,2
`

// Hand computation (watermark W = max event time so far − 5 s):
//   - A@00:00:30 arrives when max = 00:00:50, W = 00:00:45: late.
//   - A@00:00:46 arrives when W = 00:00:45: on time, out of order.
//   - "bad,row" has 2 columns: skipped, not sent. "abc" and the empty
//     pboxid: dead letters. 13 records sent.
//
// A's readings in event-time order: 10s(60) 46s(55) 50s(40) 65s(80)
// 665s(90) 1266s(95) 1320s(50) 1350s(51).
func TestHandMade(t *testing.T) {
	res := mustCompute(t, handMade, csvOptions())
	checkCounts(t, res, 13, 1, 10, 1, 2)
	if len(res.LateRecords) != 1 || res.LateRecords[0].EventTime != sec(30) || res.LateRecords[0].Watermark != sec(45) ||
		res.LateRecords[0].Offset != 2 {
		t.Errorf("late records = %+v, want A@30s at offset 2 with watermark 45s", res.LateRecords)
	}
	if len(res.DeadLetterRecords) != 2 || !strings.Contains(res.DeadLetterRecords[0].Reason, "metric") ||
		!strings.Contains(res.DeadLetterRecords[1].Reason, "pboxid") {
		t.Errorf("dead letters = %+v, want a bad metric then a missing pboxid", res.DeadLetterRecords)
	}
	checkWindows(t, res.Windows, []Window{
		// 10s, 46s, 50s; the latest (50s) has no position.
		{PboxID: "A", Start: sec(0), End: sec(60), Count: 3, Sum: 155, Min: 40, Max: 60, Avg: 155.0 / 3, Latitude: nan, Longitude: nan},
		{PboxID: "A", Start: sec(60), End: sec(120), Count: 1, Sum: 80, Min: 80, Max: 80, Avg: 80, Latitude: 57.4, Longitude: -2.4},
		{PboxID: "A", Start: sec(660), End: sec(720), Count: 1, Sum: 90, Min: 90, Max: 90, Avg: 90, Latitude: 57.5, Longitude: -2.5},
		{PboxID: "A", Start: sec(1260), End: sec(1320), Count: 1, Sum: 95, Min: 95, Max: 95, Avg: 95, Latitude: nan, Longitude: nan},
		{PboxID: "A", Start: sec(1320), End: sec(1380), Count: 2, Sum: 101, Min: 50, Max: 51, Avg: 50.5, Latitude: 57.6, Longitude: -2.6},
		// Tie at 22:40: the higher offset (metric 20, position 2,2) is the latest.
		{PboxID: "B", Start: sec(1320), End: sec(1380), Count: 2, Sum: 30, Min: 10, Max: 20, Avg: 15, Latitude: 2, Longitude: 2},
	})
	checkPeriods(t, res.WorkPeriods, []WorkPeriod{
		// Ended by 50s(40).
		{PboxID: "A", Start: sec(10), End: sec(46), DurationS: 36, Samples: 2, AvgMetric: 57.5, MaxMetric: 60},
		// 65s → 665s is exactly max gap: continues; 665s → 1266s is 601 s: ends.
		{PboxID: "A", Start: sec(65), End: sec(665), DurationS: 600, Samples: 2, AvgMetric: 85, MaxMetric: 90},
		// Ended by 1320s(50): a metric equal to the threshold does not work.
		{PboxID: "A", Start: sec(1266), End: sec(1266), DurationS: 0, Samples: 1, AvgMetric: 95, MaxMetric: 95},
		// Closed by the end of input.
		{PboxID: "A", Start: sec(1350), End: sec(1350), DurationS: 0, Samples: 1, AvgMetric: 51, MaxMetric: 51},
	})
}

func TestDevices(t *testing.T) {
	devices, err := ParseDevices([]byte("A: {company: Acme, site: Dyce}\nB:\n  company: Bco\n  threshold: 15\n"))
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := ParseDevices([]byte(`{"A": {"company": "Acme", "site": "Dyce"}, "B": {"company": "Bco", "threshold": 15}}`))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(devices["A"], *devices["B"].Threshold) != fmt.Sprint(fromJSON["A"], *fromJSON["B"].Threshold) {
		t.Errorf("YAML %v and JSON %v devices differ", devices, fromJSON)
	}
	if _, err := ParseDevices([]byte(`{"A": {"company": "x", "sight": "typo"}}`)); err == nil {
		t.Error("unknown field in devices file accepted")
	}
	o := csvOptions()
	o.Devices = devices
	res := mustCompute(t, handMade, o)
	for _, w := range res.Windows {
		want := map[string][2]string{"A": {"Acme", "Dyce"}, "B": {"Bco", ""}}[w.PboxID]
		if w.Company != want[0] || w.Site != want[1] {
			t.Errorf("window %v: company/site want %v", w, want)
		}
	}
	// B's threshold 15: its metric-20 reading (the later of the tie) works
	// alone; its metric-10 reading sorts before it.
	var bPeriods []WorkPeriod
	for _, p := range res.WorkPeriods {
		if p.PboxID == "B" {
			bPeriods = append(bPeriods, p)
		} else if p.Company != "Acme" || p.Site != "Dyce" {
			t.Errorf("work period %v: want company Acme, site Dyce", p)
		}
	}
	checkPeriods(t, bPeriods, []WorkPeriod{
		{PboxID: "B", Start: sec(1360), End: sec(1360), Samples: 1, AvgMetric: 20, MaxMetric: 20, Company: "Bco"},
	})
	if len(res.WorkPeriods) != 5 {
		t.Errorf("got %d work periods, want A's 4 and B's 1", len(res.WorkPeriods))
	}
}

func TestWatermarkPerPartition(t *testing.T) {
	// With 2 partitions X goes to 1 and Y to 0 (checked against sarama in
	// TestPartitionMatchesSarama), so X's progress does not make Y late.
	// With 1 partition it does.
	input := "id,ts,val,lat,lon\n" +
		"X,2019-03-01 01:00:00,1,,\n" +
		"Y,2019-03-01 00:00:00,2,,\n"
	for _, tc := range []struct {
		partitions int32
		late       int64
	}{{1, 1}, {2, 0}} {
		o := csvOptions()
		o.Partitions = tc.partitions
		res := mustCompute(t, input, o)
		checkCounts(t, res, 2, 0, 2-tc.late, tc.late, 0)
	}
}

func TestAllowedLateness(t *testing.T) {
	// max 100 s, out-of-orderness 5 s: W = 95 s; allowed lateness 10 s: a
	// record is late when t < 85 s.
	input := "id,ts,val,lat,lon\n" +
		"A,2019-03-01 00:01:40,1,,\n" +
		"A,2019-03-01 00:01:25,2,,\n" +
		"A,2019-03-01 00:01:24.999,3,,\n"
	o := csvOptions()
	o.AllowedLateness = 10 * time.Second
	res := mustCompute(t, input, o)
	checkCounts(t, res, 3, 0, 2, 1, 0)
	if res.LateRecords[0].EventTime != sec(85)-1 {
		t.Errorf("late record %+v, want the one at 84.999 s", res.LateRecords[0])
	}
}

func TestSlidingWindows(t *testing.T) {
	input := "id,ts,val,lat,lon\n" +
		"A,2019-03-01 00:00:30,10,1,1\n" +
		"A,2019-03-01 00:01:30,20,2,2\n"
	o := csvOptions()
	o.Window = WindowSpec{Kind: WindowSliding, Size: 2 * time.Minute, Slide: time.Minute}
	res := mustCompute(t, input, o)
	checkWindows(t, res.Windows, []Window{
		{PboxID: "A", Start: sec(-60), End: sec(60), Count: 1, Sum: 10, Min: 10, Max: 10, Avg: 10, Latitude: 1, Longitude: 1},
		{PboxID: "A", Start: sec(0), End: sec(120), Count: 2, Sum: 30, Min: 10, Max: 20, Avg: 15, Latitude: 2, Longitude: 2},
		{PboxID: "A", Start: sec(60), End: sec(180), Count: 1, Sum: 20, Min: 20, Max: 20, Avg: 20, Latitude: 2, Longitude: 2},
	})
}

func TestSessionWindows(t *testing.T) {
	// Gap 30 s: [0,30) [20,50) [50,80) merge (the last two touch); [100,130) alone.
	input := "id,ts,val,lat,lon\n" +
		"A,2019-03-01 00:00:00,1,,\n" +
		"A,2019-03-01 00:00:20,2,,\n" +
		"A,2019-03-01 00:00:50,3,5,6\n" +
		"A,2019-03-01 00:01:40,4,,\n"
	o := csvOptions()
	o.Window = WindowSpec{Kind: WindowSession, Gap: 30 * time.Second}
	res := mustCompute(t, input, o)
	checkWindows(t, res.Windows, []Window{
		{PboxID: "A", Start: sec(0), End: sec(80), Count: 3, Sum: 6, Min: 1, Max: 3, Avg: 2, Latitude: 5, Longitude: 6},
		{PboxID: "A", Start: sec(100), End: sec(130), Count: 1, Sum: 4, Min: 4, Max: 4, Avg: 4, Latitude: nan, Longitude: nan},
	})
}

func TestNDJSON(t *testing.T) {
	input := `{"pboxid":"A","event_time":"2019-03-01 00:00:01.250","metric":60,"latitude":57.1,"longitude":-2.1}
{"pboxid":7,"event_time":1551398402000,"metric":"61.5"}

{"pboxid":"A","event_time":"2019-03-01T01:00:03+01:00","metric":62,"latitude":null,"longitude":""}
{"pboxid":"A","event_time":"2019-03-01T00:00:04Z","metric":63}
not json
{"pboxid":"A","event_time":"2019-03-01 00:00:05","metric":"NaN"}
{"pboxid":"A","event_time":"2019-03-01 00:00:05","metric":null}
{"pboxid":"A","event_time":"2019-03-01 00:00:05","metric":1,"latitude":91}
{"pboxid":"A","event_time":"2019-03-01 00:00:05","metric":1,"longitude":-180.5}
{"pboxid":"","event_time":"2019-03-01 00:00:05","metric":1}
{"pboxid":1.5,"event_time":"2019-03-01 00:00:05","metric":1}
{"pboxid":"A","event_time":"2019-03-01 0:00:05","metric":1}
{"pboxid":"A","event_time":1551398405000.5,"metric":1}
{"pboxid":"A","event_time":"2019-03-01 00:00:05+01:00","metric":1}
{"pboxid":"A","event_time":true,"metric":1}
{"pboxid":"A","event_time":"2019-03-01T00:00:06.5","metric":"1e2","latitude":"-90","longitude":180}
`
	o := DefaultOptions()
	o.Format = FormatNDJSON
	o.Partitions = 1
	res := mustCompute(t, input, o)
	checkCounts(t, res, 15, 2, 5, 0, 10) // "not json" is skipped like the replayer skips it
	checkWindows(t, res.Windows, []Window{
		{PboxID: "7", Start: sec(0), End: sec(60), Count: 1, Sum: 61.5, Min: 61.5, Max: 61.5, Avg: 61.5, Latitude: nan, Longitude: nan},
		// 1.25 s, 3 s (01:00:03+01:00), 4 s, 6.5 s.
		{PboxID: "A", Start: sec(0), End: sec(60), Count: 4, Sum: 285, Min: 60, Max: 100, Avg: 285.0 / 4, Latitude: -90, Longitude: 180},
	})
	checkPeriods(t, res.WorkPeriods, []WorkPeriod{
		{PboxID: "7", Start: sec(2), End: sec(2), Samples: 1, AvgMetric: 61.5, MaxMetric: 61.5},
		{PboxID: "A", Start: sec(1) + 250, End: sec(6) + 500, DurationS: 5.25, Samples: 4, AvgMetric: 285.0 / 4, MaxMetric: 100},
	})
}

func TestDecodeEventTime(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want int64 // -1: dead letter
	}{
		{"2019-03-01 00:00:08", sec(8)},
		{"2019-03-01T00:00:08", sec(8)},
		{"2019-03-01 00:00:08.5", sec(8) + 500},
		{"2019-03-01T00:00:08.123456", sec(8) + 123},
		{"2019-03-01T02:00:08+02:00", sec(8)},
		{"2019-02-28T23:00:08.1-01:00", sec(8) + 100},
		{"2019-03-01T00:00:08Z", sec(8)},
		{"1551398408000", sec(8)},
		{"-30000", -30000},
		{"", -1},
		{nil, -1},
		{"2019-03-01", -1},
		{"2019-03-01 00:00", -1},
		{"2019-03-01 24:00:00", -1},
		{"2019-02-30 00:00:00", -1},
		{"2019-03-01 00:00:08 ", -1},
		{"2019-03-01 00:00:08+01:00", -1}, // an offset needs the RFC 3339 'T'
		{"01/03/2019 00:00:08", -1},
		{"1551398408000.0", -1},
		{false, -1},
	} {
		got, reason := decodeEventTime(tc.in)
		if (reason != "") != (tc.want == -1) || (reason == "" && got != tc.want) {
			t.Errorf("decodeEventTime(%#v) = %d, %q; want %d", tc.in, got, reason, tc.want)
		}
	}
}

func TestNegativeEventTimeWindow(t *testing.T) {
	// Before the epoch the window still aligns to it: [-60 s, 0).
	o := DefaultOptions()
	o.Format = FormatNDJSON
	res := mustCompute(t, `{"pboxid":"A","event_time":-30000,"metric":1}`+"\n", o)
	checkWindows(t, res.Windows, []Window{
		{PboxID: "A", Start: -60000, End: 0, Count: 1, Sum: 1, Min: 1, Max: 1, Avg: 1, Latitude: nan, Longitude: nan},
	})
}

func TestPartitionMatchesSarama(t *testing.T) {
	p := sarama.NewHashPartitioner("iot-topic")
	keys := []string{"", "A", "B", "X", "Y", "7", "17079", "22885", "15092", "pbox-0001", "日本"}
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("device-%d", i))
	}
	for _, k := range keys {
		for _, n := range []int32{1, 2, 3, 12, 64} {
			want, err := p.Partition(&sarama.ProducerMessage{Topic: "iot-topic", Key: sarama.StringEncoder(k)}, n)
			if err != nil {
				t.Fatal(err)
			}
			if got := Partition(k, n); got != want {
				t.Errorf("Partition(%q, %d) = %d, sarama says %d", k, n, got, want)
			}
		}
	}
	if Partition("X", 2) != 1 || Partition("Y", 2) != 0 {
		t.Error("TestWatermarkPerPartition assumes X → 1, Y → 0 of 2")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
	}{
		{"format", func(o *Options) { o.Format = "xml" }},
		{"partitions", func(o *Options) { o.Partitions = 0 }},
		{"window size", func(o *Options) { o.Window.Size = 0 }},
		{"sliding slide", func(o *Options) { o.Window = WindowSpec{Kind: WindowSliding, Size: time.Minute} }},
		{"session gap", func(o *Options) { o.Window = WindowSpec{Kind: WindowSession} }},
		{"max gap", func(o *Options) { o.MaxGap = -1 }},
		{"mapping", func(o *Options) { o.Mapping.Metric = "" }},
		{"delimiter", func(o *Options) { o.Delimiter = '"' }},
	} {
		o := DefaultOptions()
		tc.change(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", tc.name, o)
		}
	}
	o := DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Errorf("DefaultOptions invalid: %v", err)
	}
	if _, err := ParseMapping("pboxid=a,colour=b"); err == nil {
		t.Error("ParseMapping accepted an unknown field")
	}
	if _, err := Compute(strings.NewReader("a,b\n1,2\n"), DefaultOptions()); err == nil {
		t.Error("Compute accepted a CSV header without the mapped columns")
	}
}
