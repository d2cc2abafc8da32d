package operators

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ms builds Unix ms from a UTC civil time via the standard library.
func ms(y int, mo time.Month, d, h, mi, s, milli int) int64 {
	return time.Date(y, mo, d, h, mi, s, milli*1e6, time.UTC).UnixMilli()
}

func TestDecodeValid(t *testing.T) {
	nan := math.NaN()
	base := ms(2019, 3, 1, 0, 0, 8, 0)
	tests := []struct {
		name string
		in   string
		want Decoded
	}{
		{"seed", `{"event_time":"2019-03-01 00:00:08","metric":11.87,"pboxid":"17079","latitude":57.106,"longitude":-2.088}`,
			Decoded{"17079", base, 11.87, 57.106, -2.088}},
		{"T separator", `{"event_time":"2019-03-01T00:00:08","metric":1,"pboxid":"a"}`, Decoded{"a", base, 1, nan, nan}},
		{"fraction 1 digit", `{"event_time":"2019-03-01 00:00:08.5","metric":1,"pboxid":"a"}`, Decoded{"a", base + 500, 1, nan, nan}},
		{"fraction 3 digits", `{"event_time":"2019-03-01 00:00:08.123","metric":1,"pboxid":"a"}`, Decoded{"a", base + 123, 1, nan, nan}},
		{"fraction 9 digits truncated", `{"event_time":"2019-03-01T00:00:08.987654321","metric":1,"pboxid":"a"}`, Decoded{"a", base + 987, 1, nan, nan}},
		{"RFC3339 Z", `{"event_time":"2019-03-01T00:00:08Z","metric":1,"pboxid":"a"}`, Decoded{"a", base, 1, nan, nan}},
		{"RFC3339 offset", `{"event_time":"2019-03-01T01:00:08+01:00","metric":1,"pboxid":"a"}`, Decoded{"a", base, 1, nan, nan}},
		{"RFC3339 negative offset fraction", `{"event_time":"2019-02-28T19:30:08.25-04:30","metric":1,"pboxid":"a"}`, Decoded{"a", base + 250, 1, nan, nan}},
		{"epoch ms integer", `{"event_time":1551398408000,"metric":1,"pboxid":"a"}`, Decoded{"a", base, 1, nan, nan}},
		{"epoch ms string", `{"event_time":"1551398408000","metric":1,"pboxid":"a"}`, Decoded{"a", base, 1, nan, nan}},
		{"epoch ms negative", `{"event_time":-1000,"metric":1,"pboxid":"a"}`, Decoded{"a", -1000, 1, nan, nan}},
		{"epoch ms negative string", `{"event_time":"-86400000","metric":1,"pboxid":"a"}`, Decoded{"a", -86400000, 1, nan, nan}},
		{"pre-1970 text", `{"event_time":"1969-12-31 23:59:59.999","metric":1,"pboxid":"a"}`, Decoded{"a", -1, 1, nan, nan}},
		{"first accepted minute", `{"event_time":"1000-01-01 00:01:00","metric":1,"pboxid":"a"}`, Decoded{"a", ms(1000, 1, 1, 0, 1, 0, 0), 1, nan, nan}},
		{"last accepted time", `{"event_time":"9999-12-31 23:58:59.999","metric":1,"pboxid":"a"}`, Decoded{"a", ms(9999, 12, 31, 23, 58, 59, 999), 1, nan, nan}},
		{"largest metric", `{"event_time":"2019-03-01 00:00:08","metric":-1e290,"pboxid":"a"}`, Decoded{"a", base, -1e290, nan, nan}},
		{"64-byte pboxid", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"` + strings.Repeat("x", 64) + `"}`, Decoded{strings.Repeat("x", 64), base, 1, nan, nan}},
		{"pboxid inner space and non-ASCII", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"Aberdeen Nord \u00e9"}`, Decoded{"Aberdeen Nord é", base, 1, nan, nan}},
		{"leap day", `{"event_time":"2020-02-29 12:00:00","metric":1,"pboxid":"a"}`, Decoded{"a", ms(2020, 2, 29, 12, 0, 0, 0), 1, nan, nan}},
		{"numeric string metric", `{"event_time":"2019-03-01 00:00:08","metric":" 11.5 ","pboxid":"a"}`, Decoded{"a", base, 11.5, nan, nan}},
		{"metric exponent", `{"event_time":"2019-03-01 00:00:08","metric":-1.5e2,"pboxid":"a"}`, Decoded{"a", base, -150, nan, nan}},
		{"metric string sign and dot", `{"event_time":"2019-03-01 00:00:08","metric":"+.5","pboxid":"a"}`, Decoded{"a", base, 0.5, nan, nan}},
		{"integer pboxid", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":17079}`, Decoded{"17079", base, 1, nan, nan}},
		{"escaped pboxid", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a\u00e9\"b"}`, Decoded{"aé\"b", base, 1, nan, nan}},
		{"escaped key", `{"event_time":"2019-03-01 00:00:08","metric":1,"pbox\u0069d":"x"}`, Decoded{"x", base, 1, nan, nan}},
		{"duplicate key last wins", `{"event_time":"2019-03-01 00:00:08","metric":1,"metric":2,"pboxid":"a"}`, Decoded{"a", base, 2, nan, nan}},
		{"unknown fields ignored", `{"x":[1,{"y":null}],"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a","z":true}`, Decoded{"a", base, 1, nan, nan}},
		{"white space", " \n\t{ \"event_time\" : \"2019-03-01 00:00:08\" , \"metric\" : 1 , \"pboxid\" : \"a\" } \r\n", Decoded{"a", base, 1, nan, nan}},
		{"only latitude", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a","latitude":-90}`, Decoded{"a", base, 1, -90, nan}},
		{"only longitude as string", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a","longitude":"180"}`, Decoded{"a", base, 1, nan, 180}},
		{"null position", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a","latitude":null,"longitude":null}`, Decoded{"a", base, 1, nan, nan}},
	}
	dec := NewDecoder(DefaultConfig())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dec.Decode([]byte(tc.in))
			if err != nil {
				t.Fatalf("Decode(%s) error %v", tc.in, err)
			}
			if !sameDecoded(got, tc.want) {
				t.Fatalf("Decode(%s)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

func sameFloat(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

func sameDecoded(a, b Decoded) bool {
	return a.PboxID == b.PboxID && a.EventTime == b.EventTime && sameFloat(a.Metric, b.Metric) &&
		sameFloat(a.Latitude, b.Latitude) && sameFloat(a.Longitude, b.Longitude)
}

func TestDecodeTimeZone(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	cfg := DefaultConfig()
	cfg.Location = berlin
	dec := NewDecoder(cfg)
	tests := []struct {
		in   string
		want int64
	}{
		{"2019-03-01 01:00:08", ms(2019, 3, 1, 0, 0, 8, 0)},  // CET = UTC+1
		{"2019-07-01T02:00:00", ms(2019, 7, 1, 0, 0, 0, 0)},  // CEST = UTC+2
		{"2019-07-01T02:00:00Z", ms(2019, 7, 1, 2, 0, 0, 0)}, // explicit zone wins
		{"2019-07-01T02:00:00+00:00", ms(2019, 7, 1, 2, 0, 0, 0)},
		{"2019-07-01 02:00:00.5", ms(2019, 7, 1, 0, 0, 0, 500)},
		{"1561939200000", ms(2019, 7, 1, 0, 0, 0, 0)}, // epoch is zone-free
	}
	for _, tc := range tests {
		got, err := dec.Decode([]byte(`{"pboxid":"a","metric":1,"event_time":"` + tc.in + `"}`))
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if got.EventTime != tc.want {
			t.Errorf("%s: event time %d, want %d", tc.in, got.EventTime, tc.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	const ok = `"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a"`
	tests := []struct {
		name, in, reason string
	}{
		{"empty", ``, ReasonMalformedJSON},
		{"spaces only", `   `, ReasonMalformedJSON},
		{"array", `[1,2]`, ReasonMalformedJSON},
		{"string", `"x"`, ReasonMalformedJSON},
		{"null", `null`, ReasonMalformedJSON},
		{"truncated", `{"event_time":"2019-03-01 00:00:08","metric":1`, ReasonMalformedJSON},
		{"trailing garbage", `{` + ok + `}x`, ReasonMalformedJSON},
		{"two objects", `{` + ok + `}{}`, ReasonMalformedJSON},
		{"trailing comma", `{` + ok + `,}`, ReasonMalformedJSON},
		{"single quotes", `{'pboxid':'a'}`, ReasonMalformedJSON},
		{"bad number", `{` + ok + `,"x":01}`, ReasonMalformedJSON},
		{"NaN literal", `{"event_time":"2019-03-01 00:00:08","metric":NaN,"pboxid":"a"}`, ReasonMalformedJSON},
		{"bad escape", `{` + ok + `,"x":"\q"}`, ReasonMalformedJSON},
		{"control char", "{" + ok + ",\"x\":\"a\x01\"}", ReasonMalformedJSON},
		{"invalid utf8", "{" + ok + ",\"x\":\"\xff\"}", ReasonMalformedJSON},
		{"bad field before malformed", `{"pboxid":"","metric":1,`, ReasonMalformedJSON},
		{"missing pboxid", `{"event_time":"2019-03-01 00:00:08","metric":1}`, ReasonMissingPboxID},
		{"null pboxid", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":null}`, ReasonMissingPboxID},
		{"case-sensitive key", `{"event_time":"2019-03-01 00:00:08","metric":1,"PboxID":"a"}`, ReasonMissingPboxID},
		{"empty pboxid", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":""}`, ReasonInvalidPboxID},
		{"blank pboxid", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":" \t"}`, ReasonInvalidPboxID},
		{"float pboxid", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":1.5}`, ReasonInvalidPboxID},
		{"exponent pboxid", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":1e3}`, ReasonInvalidPboxID},
		{"bool pboxid", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":true}`, ReasonInvalidPboxID},
		{"object pboxid", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":{}}`, ReasonInvalidPboxID},
		{"pboxid before event_time", `{"metric":1,"pboxid":""}`, ReasonInvalidPboxID},
		{"pboxid leading space", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":" a"}`, ReasonInvalidPboxID},
		{"pboxid trailing space", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"dev "}`, ReasonInvalidPboxID},
		{"pboxid trailing NBSP", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"dev\u00a0"}`, ReasonInvalidPboxID},
		{"pboxid escaped control char", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"de\u0001v"}`, ReasonInvalidPboxID},
		{"pboxid escaped NUL", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"dev\u0000"}`, ReasonInvalidPboxID},
		{"pboxid tab", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a\tb"}`, ReasonInvalidPboxID},
		{"pboxid DEL", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a\u007fb"}`, ReasonInvalidPboxID},
		{"pboxid C1 control", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a\u0085b"}`, ReasonInvalidPboxID},
		{"pboxid unpaired surrogate", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a\ud800"}`, ReasonInvalidPboxID},
		{"pboxid U+FFFD", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a\ufffd"}`, ReasonInvalidPboxID},
		{"pboxid 65 bytes", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"` + strings.Repeat("x", 65) + `"}`, ReasonPboxIDTooLong},
		{"pboxid 33 two-byte characters", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"` + strings.Repeat("é", 33) + `"}`, ReasonPboxIDTooLong},
		{"pboxid 65-digit integer", `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":` + strings.Repeat("7", 65) + `}`, ReasonPboxIDTooLong},
		{"pboxid too long before event_time", `{"metric":1,"pboxid":"` + strings.Repeat("x", 65) + `"}`, ReasonPboxIDTooLong},
		{"missing event_time", `{"metric":1,"pboxid":"a"}`, ReasonMissingEventTime},
		{"null event_time", `{"event_time":null,"metric":1,"pboxid":"a"}`, ReasonMissingEventTime},
		{"event_time before metric", `{"metric":"x","pboxid":"a"}`, ReasonMissingEventTime},
		{"bad month", `{"event_time":"2019-13-01 00:00:08","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"bad day", `{"event_time":"2019-02-29 00:00:08","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"day 31 of April", `{"event_time":"2019-04-31 00:00:08","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"hour 24", `{"event_time":"2019-03-01 24:00:00","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"second 60", `{"event_time":"2019-03-01 00:00:60","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"minute 60", `{"event_time":"2019-03-01 00:60:00","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"year 0", `{"event_time":"0000-03-01 00:00:00","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"date only", `{"event_time":"2019-03-01","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"slashes", `{"event_time":"2019/03/01 00:00:08","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"empty fraction", `{"event_time":"2019-03-01 00:00:08.","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"10-digit fraction", `{"event_time":"2019-03-01 00:00:08.1234567890","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"bad offset", `{"event_time":"2019-03-01T00:00:08+0100","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"offset hour 24", `{"event_time":"2019-03-01T00:00:08+24:00","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"trailing space", `{"event_time":"2019-03-01 00:00:08 ","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"float epoch", `{"event_time":1551398408000.5,"metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"epoch too large", `{"event_time":99999999999999999999,"metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"bool event_time", `{"event_time":false,"metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"empty event_time", `{"event_time":"","metric":1,"pboxid":"a"}`, ReasonInvalidEventTime},
		{"year 1", `{"event_time":"0001-01-01 00:00:00","metric":1,"pboxid":"a"}`, ReasonEventTimeOutOfRange},
		{"year 999", `{"event_time":"0999-12-31 23:59:59.999","metric":1,"pboxid":"a"}`, ReasonEventTimeOutOfRange},
		{"first minute of 1000", `{"event_time":"1000-01-01 00:00:59.999","metric":1,"pboxid":"a"}`, ReasonEventTimeOutOfRange},
		{"window would end in 10000", `{"event_time":"9999-12-31 23:59:00","metric":1,"pboxid":"a"}`, ReasonEventTimeOutOfRange},
		{"last millisecond", `{"event_time":253402300799999,"metric":1,"pboxid":"a"}`, ReasonEventTimeOutOfRange},
		{"offset moves into year 999", `{"event_time":"1000-01-01T00:30:00+01:00","metric":1,"pboxid":"a"}`, ReasonEventTimeOutOfRange},
		{"out of range before metric", `{"event_time":"0999-01-01 00:00:00","metric":"x","pboxid":"a"}`, ReasonEventTimeOutOfRange},
		{"missing metric", `{"event_time":"2019-03-01 00:00:08","pboxid":"a"}`, ReasonMissingMetric},
		{"null metric", `{"event_time":"2019-03-01 00:00:08","metric":null,"pboxid":"a"}`, ReasonMissingMetric},
		{"empty metric", `{"event_time":"2019-03-01 00:00:08","metric":"","pboxid":"a"}`, ReasonInvalidMetric},
		{"blank metric", `{"event_time":"2019-03-01 00:00:08","metric":"  ","pboxid":"a"}`, ReasonInvalidMetric},
		{"word metric", `{"event_time":"2019-03-01 00:00:08","metric":"abc","pboxid":"a"}`, ReasonInvalidMetric},
		{"NaN metric", `{"event_time":"2019-03-01 00:00:08","metric":"NaN","pboxid":"a"}`, ReasonInvalidMetric},
		{"Inf metric", `{"event_time":"2019-03-01 00:00:08","metric":"Infinity","pboxid":"a"}`, ReasonInvalidMetric},
		{"hex metric", `{"event_time":"2019-03-01 00:00:08","metric":"0x10","pboxid":"a"}`, ReasonInvalidMetric},
		{"underscore metric", `{"event_time":"2019-03-01 00:00:08","metric":"1_000","pboxid":"a"}`, ReasonInvalidMetric},
		{"overflow metric", `{"event_time":"2019-03-01 00:00:08","metric":1e400,"pboxid":"a"}`, ReasonInvalidMetric},
		{"bool metric", `{"event_time":"2019-03-01 00:00:08","metric":true,"pboxid":"a"}`, ReasonInvalidMetric},
		{"object metric", `{"event_time":"2019-03-01 00:00:08","metric":{"v":1},"pboxid":"a"}`, ReasonInvalidMetric},
		{"array metric", `{"event_time":"2019-03-01 00:00:08","metric":[1],"pboxid":"a"}`, ReasonInvalidMetric},
		{"metric above 1e290", `{"event_time":"2019-03-01 00:00:08","metric":1e308,"pboxid":"a"}`, ReasonMetricOutOfRange},
		{"metric below -1e290", `{"event_time":"2019-03-01 00:00:08","metric":"-1.0000000000001e290","pboxid":"a"}`, ReasonMetricOutOfRange},
		{"largest double", `{"event_time":"2019-03-01 00:00:08","metric":1.7976931348623157e308,"pboxid":"a"}`, ReasonMetricOutOfRange},
		{"metric out of range before latitude", `{"event_time":"2019-03-01 00:00:08","metric":1e300,"pboxid":"a","latitude":100}`, ReasonMetricOutOfRange},
		{"metric before latitude", `{"event_time":"2019-03-01 00:00:08","metric":"x","pboxid":"a","latitude":100}`, ReasonInvalidMetric},
		{"latitude range", `{` + ok + `,"latitude":90.0001}`, ReasonInvalidLatitude},
		{"latitude negative range", `{` + ok + `,"latitude":-91}`, ReasonInvalidLatitude},
		{"latitude word", `{` + ok + `,"latitude":"north"}`, ReasonInvalidLatitude},
		{"latitude bool", `{` + ok + `,"latitude":false}`, ReasonInvalidLatitude},
		{"latitude empty string", `{` + ok + `,"latitude":""}`, ReasonInvalidLatitude},
		{"latitude before longitude", `{` + ok + `,"latitude":91,"longitude":181}`, ReasonInvalidLatitude},
		{"longitude range", `{` + ok + `,"latitude":1,"longitude":180.5}`, ReasonInvalidLongitude},
		{"longitude word", `{` + ok + `,"longitude":"x"}`, ReasonInvalidLongitude},
	}
	dec := NewDecoder(DefaultConfig())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dec.Decode([]byte(tc.in))
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode(%q) error %v, want *DecodeError %s", tc.in, err, tc.reason)
			}
			if de.Reason != tc.reason {
				t.Fatalf("Decode(%q) reason %q (%v), want %q", tc.in, de.Reason, err, tc.reason)
			}
			if ReasonLabel(err.Error()) != tc.reason {
				t.Fatalf("ReasonLabel(%q) = %q, want %q", err.Error(), ReasonLabel(err.Error()), tc.reason)
			}
		})
	}
}

// TestEventTimeRangeFollowsWindow: the accepted range shrinks by the window
// size (tumbling, sliding) or the session gap, at both ends.
func TestEventTimeRangeFollowsWindow(t *testing.T) {
	for _, tc := range []struct {
		w   WindowSpec
		ext time.Duration
	}{
		{WindowSpec{Kind: WindowTumbling, Size: time.Minute}, time.Minute},
		{WindowSpec{Size: time.Hour}, time.Hour},
		{WindowSpec{Kind: WindowSliding, Size: 24 * time.Hour, Slide: time.Hour}, 24 * time.Hour},
		{WindowSpec{Kind: WindowSession, Size: time.Hour, Gap: 30 * time.Minute}, 30 * time.Minute},
	} {
		cfg := DefaultConfig()
		cfg.Window = tc.w
		lo, hi := cfg.EventTimeRange()
		if lo != ms(1000, 1, 1, 0, 0, 0, 0)+tc.ext.Milliseconds() || hi != ms(9999, 12, 31, 23, 59, 59, 999)-tc.ext.Milliseconds() {
			t.Errorf("%+v: range [%s, %s]", tc.w, formatMillis(lo), formatMillis(hi))
		}
		dec := NewDecoder(cfg)
		for _, c := range []struct {
			t  int64
			ok bool
		}{{lo, true}, {hi, true}, {lo - 1, false}, {hi + 1, false}} {
			_, err := dec.Decode([]byte(`{"pboxid":"a","metric":1,"event_time":` + strconv.FormatInt(c.t, 10) + `}`))
			var de *DecodeError
			if c.ok && err != nil || !c.ok && (!errors.As(err, &de) || de.Reason != ReasonEventTimeOutOfRange) {
				t.Errorf("%+v: event time %s: error %v, want ok=%v", tc.w, formatMillis(c.t), err, c.ok)
			}
		}
	}
}

func TestDecodeOversized(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxMessageBytes = 64
	dec := NewDecoder(cfg)
	msg := `{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"a"}` // 61 bytes
	if _, err := dec.Decode([]byte(msg)); err != nil {
		t.Fatalf("61-byte message: %v", err)
	}
	padded := msg[:len(msg)-1] + `,"x":1}` // 67 bytes
	_, err := dec.Decode([]byte(padded))
	var de *DecodeError
	if !errors.As(err, &de) || de.Reason != ReasonOversized {
		t.Fatalf("67-byte message: error %v, want oversized", err)
	}
	// Oversized is checked before parsing.
	_, err = dec.Decode([]byte(strings.Repeat("x", 65)))
	if !errors.As(err, &de) || de.Reason != ReasonOversized {
		t.Fatalf("65 bytes of garbage: error %v, want oversized", err)
	}
}

func TestReasonLabel(t *testing.T) {
	tests := map[string]string{
		"invalid_metric":                  "invalid_metric",
		`invalid_metric: "abc" is wrong`:  "invalid_metric",
		"late":                            "late",
		"malformed_json: x at byte 3":     "malformed_json",
		"something_else: detail":          ReasonOther,
		"":                                ReasonOther,
		"oversized: 2000000 bytes > 1024": "oversized",
	}
	for in, want := range tests {
		if got := ReasonLabel(in); got != want {
			t.Errorf("ReasonLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeErrorString(t *testing.T) {
	if got := (&DecodeError{Reason: ReasonMissingMetric}).Error(); got != "missing_metric" {
		t.Errorf("got %q", got)
	}
	if got := (&DecodeError{Reason: ReasonInvalidMetric, Detail: "x"}).Error(); got != "invalid_metric: x" {
		t.Errorf("got %q", got)
	}
}

func TestDecodeDoesNotAliasInput(t *testing.T) {
	dec := NewDecoder(DefaultConfig())
	buf := []byte(`{"event_time":"2019-03-01 00:00:08","metric":1,"pboxid":"abc"}`)
	got, err := dec.Decode(buf)
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, strings.Repeat("z", len(buf)))
	if got.PboxID != "abc" {
		t.Fatalf("PboxID changed with the input buffer: %q", got.PboxID)
	}
}

// TestParseTextTimeAgainstStdlib compares the hand-written parser with
// time.Parse over many dates.
func TestParseTextTimeAgainstStdlib(t *testing.T) {
	start := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	for tm := start; tm.Year() < 10000; tm = tm.Add(97*24*time.Hour + 3*time.Hour + 7*time.Minute + 11*time.Second + 123456789) {
		s := tm.Format("2006-01-02T15:04:05.000000000Z07:00")
		got, ok := parseTextTime([]byte(s), time.UTC, true)
		if !ok || got != tm.UnixMilli() {
			t.Fatalf("%s: got %d %v, want %d", s, got, ok, tm.UnixMilli())
		}
	}
}
