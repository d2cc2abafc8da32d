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
		if strings.TrimSpace(got.PboxID) == "" {
			t.Fatalf("blank pboxid %q", got.PboxID)
		}
		if math.IsNaN(got.Metric) || math.IsInf(got.Metric, 0) {
			t.Fatalf("metric %v", got.Metric)
		}
		if !math.IsNaN(got.Latitude) && (got.Latitude < -90 || got.Latitude > 90) {
			t.Fatalf("latitude %v", got.Latitude)
		}
		if !math.IsNaN(got.Longitude) && (got.Longitude < -180 || got.Longitude > 180) {
			t.Fatalf("longitude %v", got.Longitude)
		}
		if !validEventTime(got.EventTime) {
			t.Fatalf("event time %d", got.EventTime)
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
