package sinktest

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/seed"
)

// TestParseSQLTimeRoundTrip parses the text the time package formats for
// random ms of the years 0 to 9999 back to the same ms.
func TestParseSQLTimeRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(seed.For(t), 2))
	first := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	end := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cases := []int64{0, -1, 1, 999, -999, -86_400_000, 951_782_400_000 /* 2000-02-29 */, first, end - 1}
	for range 100_000 {
		cases = append(cases, first+rnd.Int64N(end-first))
	}
	for _, ms := range cases {
		s := time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000")
		if back, err := parseSQLTime(s); err != nil || back != ms {
			t.Fatalf("parseSQLTime(%s) = %d, %v; want %d", s, back, err, ms)
		}
	}
}

func TestParseSQLTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // RFC 3339 ms, "" for an error
	}{
		{"2019-03-01 00:00:08", "2019-03-01T00:00:08.000Z"},
		{"2019-03-01T00:00:08.5", "2019-03-01T00:00:08.500Z"},
		{"2019-03-01 00:00:08.123456", "2019-03-01T00:00:08.123Z"},
		{"2019-03-01 00:00:08.", ""},
		{"2019-03-01 00:00:8", ""},
		{"2019-13-01 00:00:08", ""},
		{"2019-03-01 24:00:00", ""},
		{"2019-03-01 00:00:08.12x", ""},
		{"", ""},
	} {
		got, err := parseSQLTime(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("parseSQLTime(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseSQLTime(%q): %v", tc.in, err)
			continue
		}
		if s := time.UnixMilli(got).UTC().Format("2006-01-02T15:04:05.000Z"); s != tc.want {
			t.Errorf("parseSQLTime(%q) = %s, want %s", tc.in, s, tc.want)
		}
	}
}
