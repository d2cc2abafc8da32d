package operators

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"event_time":"2019-03-01 00:00:08","metric":11.87,"pboxid":"17079","latitude":57.106,"longitude":-2.088}`,
		`{"event_time":"2019-03-01T00:00:08.123+01:00","metric":"11.87","pboxid":17079}`,
		`{"event_time":1551398408000,"metric":-1e3,"pboxid":"a\u00e9","latitude":null}`,
		`{"event_time":"-1000","metric":" 5 ","pboxid":" x ","longitude":"180"}`,
		`{"event_time":"2019-02-29 00:00:08","metric":1,"pboxid":"a"}`,
		`{"pboxid":"","metric":1}`,
		`{"a":[1,{"b":[true,false,null]}],"pboxid":"p","event_time":"0001-01-01 00:00:00Z","metric":0}`,
		`{"pboxid":"\ud800","event_time":0,"metric":0}`,
		`{"pboxid":"dev ","event_time":"9999-12-31 23:59:30","metric":1e308}`,
		`{"pboxid":"a\u0001","event_time":"0999-01-01 00:00:00","metric":-1e291}`,
		`{"pboxid":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","event_time":0,"metric":0}`,
		`[]`, `{`, `{"x":1}x`, ``, `"s"`, `{"metric":NaN}`,
	} {
		f.Add([]byte(s))
	}
	dec := NewDecoder(DefaultConfig())
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := dec.Decode(b)

		// JSON validity must agree with encoding/json (plus the UTF-8 rule).
		isObject := stdjson.Valid(b) && utf8.Valid(b) && bytes.TrimLeft(b, " \t\r\n")[0] == '{'
		var de *DecodeError
		if err != nil {
			if !errors.As(err, &de) {
				t.Fatalf("error %T %v is not a *DecodeError", err, err)
			}
			if ReasonLabel(err.Error()) != de.Reason || de.Reason == ReasonOther {
				t.Fatalf("reason %q not a constant", de.Reason)
			}
			if (de.Reason == ReasonMalformedJSON) == isObject {
				t.Fatalf("malformed=%v but encoding/json object=%v for %q (%v)", de.Reason == ReasonMalformedJSON, isObject, b, err)
			}
			return
		}
		if !isObject {
			t.Fatalf("accepted %q that encoding/json rejects", b)
		}
		checkStorable(t, got)
		if !math.IsNaN(got.Latitude) && (got.Latitude < -90 || got.Latitude > 90) {
			t.Fatalf("latitude %v", got.Latitude)
		}
		if !math.IsNaN(got.Longitude) && (got.Longitude < -180 || got.Longitude > 180) {
			t.Fatalf("longitude %v", got.Longitude)
		}
		// Cross-check the fields with encoding/json.
		var m map[string]any
		d := stdjson.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		switch v := m["pboxid"].(type) {
		case string:
			if v != got.PboxID {
				t.Fatalf("pboxid %q, encoding/json %q", got.PboxID, v)
			}
		case stdjson.Number:
			if string(v) != got.PboxID {
				t.Fatalf("pboxid %q, encoding/json %q", got.PboxID, v)
			}
		default:
			t.Fatalf("pboxid %q from %T", got.PboxID, v)
		}
		var want float64
		switch v := m["metric"].(type) {
		case string:
			want, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		case stdjson.Number:
			want, _ = v.Float64()
		default:
			t.Fatalf("metric from %T", v)
		}
		if want != got.Metric {
			t.Fatalf("metric %v, encoding/json %v", got.Metric, want)
		}
	})
}

// checkStorable fails t unless d obeys the validation contract: every sink
// can store it (see Decoder).
func checkStorable(t *testing.T, d Decoded) {
	t.Helper()
	id := d.PboxID
	if id == "" || len(id) > MaxPboxIDBytes || !utf8.ValidString(id) || strings.ContainsRune(id, utf8.RuneError) ||
		strings.TrimSpace(id) != id || strings.IndexFunc(id, unicode.IsControl) >= 0 {
		t.Fatalf("pboxid %q breaks the device id rules", id)
	}
	if math.IsNaN(d.Metric) || math.Abs(d.Metric) > MaxAbsMetric {
		t.Fatalf("metric %v", d.Metric)
	}
	cfg := DefaultConfig()
	if lo, hi := cfg.EventTimeRange(); d.EventTime < lo || d.EventTime > hi {
		t.Fatalf("event time %d outside [%d, %d]", d.EventTime, lo, hi)
	}
}

// FuzzPartitionStorable runs arbitrary lines through a Partition with both
// watermark guards on and processing time moving in steps, and checks that
// every row it emits can be stored by every sink (times in the DATETIME
// range, finite floats, device ids by the rules), that every record is
// counted once, and that the watermark never runs ahead of processing time
// plus max_future.
func FuzzPartitionStorable(f *testing.F) {
	f.Add([]byte(`{"pboxid":"a","event_time":"2026-01-01 00:00:00","metric":60}
{"pboxid":"a","event_time":"2026-01-01 00:00:30","metric":1e290}
{"pboxid":"a","event_time":"2106-02-07 06:28:16","metric":1}
{"pboxid":"b","event_time":"9999-12-31 23:59:30","metric":1e308}
{"pboxid":"a","event_time":"2026-01-01 00:05:00","metric":-1e290}`), uint16(700), uint8(1))
	f.Add([]byte(`{"pboxid":"a","event_time":"0999-01-01 00:00:00","metric":1}
{"pboxid":"dev ","event_time":1767225600000,"metric":1}`), uint16(60000), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, step uint16, kind uint8) {
		cfg := DefaultConfig()
		switch kind % 3 {
		case 1:
			cfg.Window = WindowSpec{Kind: WindowSliding, Size: 10 * time.Minute, Slide: time.Minute}
		case 2:
			cfg.Window = WindowSpec{Kind: WindowSession, Gap: 5 * time.Minute}
		}
		cfg.MaxFuture = time.Hour
		cfg.IdleTimeout = time.Minute
		cfg.AllowedLateness = time.Minute
		p := NewPartition(0, cfg, nil)
		lo, hi := cfg.EventTimeRange()
		inSink := func(ms int64) bool { return ms >= MinSinkTime && ms <= MaxSinkTime }
		finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
		var out Output
		var n int64
		check := func() {
			for _, r := range out.Readings {
				if r.EventTime < lo || r.EventTime > hi || !finite(r.Metric) || len(r.PboxID) > MaxPboxIDBytes {
					t.Fatalf("reading %+v", r)
				}
			}
			for _, w := range out.Windows {
				if !inSink(w.Start) || !inSink(w.End) || !finite(w.Sum) || !finite(w.Avg) || !finite(w.Min) || !finite(w.Max) {
					t.Fatalf("window %+v", w)
				}
			}
			for _, w := range out.WorkPeriods {
				if !inSink(w.Start) || !inSink(w.End) || !finite(w.AvgMetric) || !finite(w.MaxMetric) {
					t.Fatalf("work period %+v", w)
				}
			}
			for _, l := range out.Late {
				if !inSink(l.EventTime) || !inSink(l.Watermark) {
					t.Fatalf("late %+v", l)
				}
			}
			for _, d := range out.DeadLetters {
				if ReasonLabel(d.Reason) == ReasonOther {
					t.Fatalf("dead letter reason %q", d.Reason)
				}
			}
			if wm := p.Watermark(); wm != math.MaxInt64 && wm > now+cfg.MaxFuture.Milliseconds()-cfg.OutOfOrderness.Milliseconds() {
				t.Fatalf("watermark %d ahead of processing time %d + max_future", wm, now)
			}
			out.Reset()
		}
		for i, line := range bytes.Split(data, []byte("\n")) {
			if i%3 == 0 {
				now += int64(step) * 100
				p.AdvanceProcessingTime(now, &out)
				check()
			}
			p.Process(int64(i), line, &out)
			n++
			check()
		}
		p.Finish(&out)
		check()
		if st := p.Stats(); st.Received != n || st.Valid+st.DeadLetters != n {
			t.Fatalf("stats %+v for %d records", st, n)
		}
	})
}

// TestFastFloat checks the fast path against strconv.ParseFloat.
func TestFastFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		var s string
		switch i % 3 {
		case 0:
			s = strconv.FormatFloat(rng.NormFloat64()*math.Pow(10, float64(rng.IntN(12)-4)), 'f', rng.IntN(10), 64)
		case 1:
			s = strconv.FormatInt(rng.Int64N(1e15)-5e14, 10)
		case 2:
			s = strconv.FormatUint(rng.Uint64N(1e15), 10) + "." + strconv.Itoa(rng.IntN(100000))
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := fastFloat([]byte(s))
		if ok && got != want {
			t.Fatalf("fastFloat(%q) = %v, ParseFloat %v", s, got, want)
		}
	}
}
