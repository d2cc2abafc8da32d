package oracle

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/dataset"
)

// TestValidationContract: one record per rule of the job's validation
// contract, with the reason the oracle must give.
func TestValidationContract(t *testing.T) {
	const hdr = "event_time,metric,pboxid\n"
	long := strings.Repeat("x", 65)
	tests := []struct {
		name, row, reason string
	}{
		{"valid", `2019-03-01 00:00:08,1,a`, ""},
		{"64-byte id", `2019-03-01 00:00:08,1,` + strings.Repeat("x", 64), ""},
		{"inner space", `2019-03-01 00:00:08,1,"a b"`, ""},
		{"empty id", `2019-03-01 00:00:08,1,`, reasonInvalidPboxID},
		{"65-byte id", `2019-03-01 00:00:08,1,` + long, reasonPboxIDTooLong},
		{"trailing space", `2019-03-01 00:00:08,1,"dev "`, reasonInvalidPboxID},
		{"leading space", `2019-03-01 00:00:08,1," dev"`, reasonInvalidPboxID},
		{"control char", "2019-03-01 00:00:08,1,de\x01v", reasonInvalidPboxID},
		{"invalid UTF-8", "2019-03-01 00:00:08,1,de\xffv", reasonInvalidPboxID},
		{"U+FFFD", "2019-03-01 00:00:08,1,de\uFFFDv", reasonInvalidPboxID},
		{"year 999", `0999-12-31 23:59:59,1,a`, reasonEventTimeRange},
		{"first minute of 1000", `1000-01-01 00:00:30,1,a`, reasonEventTimeRange},
		{"first accepted", `1000-01-01 00:01:00,1,a`, ""},
		{"window ends in 10000", `9999-12-31 23:59:00,1,a`, reasonEventTimeRange},
		{"last accepted", `9999-12-31 23:58:59.999,1,a`, ""},
		{"year 0", `0000-06-01 00:00:00,1,a`, reasonInvalidEventTime},
		{"empty event time", `,1,a`, reasonInvalidEventTime},
		{"empty metric", `2019-03-01 00:00:08,,a`, reasonInvalidMetric},
		{"metric 1e290", `2019-03-01 00:00:08,-1e290,a`, ""},
		{"metric 1e308", `2019-03-01 00:00:08,1e308,a`, reasonMetricRange},
		{"metric 1e999", `2019-03-01 00:00:08,1e999,a`, reasonInvalidMetric},
		{"pboxid before event time", `0999-01-01 00:00:00,1e308,` + long, reasonPboxIDTooLong},
		{"event time before metric", `0999-01-01 00:00:00,1e308,a`, reasonEventTimeRange},
	}
	for _, tc := range tests {
		res := mustCompute(t, hdr+tc.row+"\n", DefaultOptions())
		switch {
		case tc.reason == "" && res.Readings != 1:
			t.Errorf("%s: not a reading: %+v", tc.name, res.DeadLetterRecords)
		case tc.reason != "" && (res.DeadLetters != 1 || ReasonLabel(res.DeadLetterRecords[0].Reason) != tc.reason):
			t.Errorf("%s: dead letters %+v, want reason %s", tc.name, res.DeadLetterRecords, tc.reason)
		}
	}
	// The range follows the window extent.
	o := DefaultOptions()
	o.Window = WindowSpec{Kind: WindowSession, Gap: time.Hour}
	if res := mustCompute(t, hdr+"9999-12-31 23:00:00,1,a\n9999-12-31 22:59:59.999,1,a\n", o); res.DeadLetters != 1 || res.Readings != 1 {
		t.Errorf("session gap 1h near the end: %+v", res.DeadLetterRecords)
	}
}

// TestOversizedAndFuture: MaxMessageBytes and MaxFuture.
func TestOversizedAndFuture(t *testing.T) {
	o := DefaultOptions()
	o.MaxMessageBytes = 100
	o.MaxFuture = time.Hour
	o.Now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	in := "event_time,metric,pboxid\n" +
		"2025-12-31 23:00:00,1,a\n" +
		"2026-01-01 01:00:00,1,a\n" + // exactly max_future ahead: on time
		"2026-01-01 01:00:00.001,1,a\n" + // future
		"2106-02-07 06:28:16,1,a\n" + // future, does not move the watermark
		"2026-01-01 00:30:00,1," + strings.Repeat("y", 60) + "\n" + // 101 bytes sent
		"2026-01-01 00:59:56,1,a\n" // on time (W = 00:59:55): the future records moved nothing
	res := mustCompute(t, in, o)
	checkCounts(t, res, 6, 0, 3, 0, 3)
	want := []string{reasonFutureEventTime, reasonFutureEventTime, reasonOversized}
	for i, d := range res.DeadLetterRecords {
		if ReasonLabel(d.Reason) != want[i] {
			t.Errorf("dead letter %d: %q, want %s", i, d.Reason, want[i])
		}
	}
}

// TestSentSizeMatchesReplayer: the oracle's size of a sent message value
// equals the length of the value eddy's replayer produces, for CSV and
// NDJSON inputs with escapes, odd numbers and absent members.
func TestSentSizeMatchesReplayer(t *testing.T) {
	csvIn := "pboxid,event_time,metric,latitude,longitude\n" +
		"a,2019-03-01 00:00:08,11.87,57.1,-2.1\n" +
		"\"q\"\"uote\\\",2019-03-01T00:00:08,+5,,\n" +
		"tab\tnl,x,.5,5.,1e3\n" +
		"ctl\x01\x1f,1551398408000, 2.50 ,abc,NaN\n" +
		"bad\xff\xfeutf8é,t,1e999,,\n" +
		",,,,\n"
	ndIn := `{"pboxid":"a","event_time":"2019-03-01 00:00:08","metric":11.87,"latitude":57.1,"longitude":-2.1}
{"pboxid":17079,"event_time":1551398408000,"metric":"+5","latitude":"","longitude":null}
{"pboxid":"e\u00e9\"\\\n\u0001","event_time":"x","metric":true,"latitude":[1, 2],"longitude":{"a": 1}}
{"pboxid":"only"}
{"other":1}
{"metric":1e5,"metric":-0.0,"event_time":"  ","pboxid":"\ud800"}
`
	for _, tc := range []struct {
		name, in string
		format   string
	}{{"x.csv", csvIn, FormatCSV}, {"x.ndjson", ndIn, FormatNDJSON}} {
		r, err := dataset.OpenReader(tc.name, strings.NewReader(tc.in), dataset.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var want []int
		for {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			want = append(want, len(rec.Value))
		}
		o := DefaultOptions()
		o.Format = tc.format
		var got []int
		if _, err := readRecords(strings.NewReader(tc.in), &o, func(rr *rawRecord) { got = append(got, rr.size) }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d records, replayer %d", tc.name, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s record %d: size %d, replayer sends %d bytes", tc.name, i+1, got[i], want[i])
			}
		}
	}
}
