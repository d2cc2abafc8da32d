package sinks

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/seed"
)

func TestTimeFormatMatchesTimePackage(t *testing.T) {
	rnd := rand.New(rand.NewPCG(seed.For(t), 2))
	cases := []int64{0, -1, 1, 999, -999, -86_400_000, 951_782_400_000 /* 2000-02-29 */, minTimeMs, endTimeMs - 1, minYear0Ms}
	for range 100_000 {
		cases = append(cases, minYear0Ms+rnd.Int64N(endTimeMs-minYear0Ms))
	}
	for _, ms := range cases {
		want := time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000")
		if got := sqlTime(ms); got != want {
			t.Fatalf("sqlTime(%d) = %s, want %s", ms, got, want)
		}
		d := floorDiv(ms, msPerDay)
		if want[:10] != dayString(d) {
			t.Fatalf("dayString(%d) = %s, want %s", d, dayString(d), want[:10])
		}
		if y, m, dd := civilFromDays(d); daysFromCivil(y, m, dd) != d {
			t.Fatalf("civil round trip of day %d failed", d)
		}
	}
}

func TestCleanString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"ééé", 2, "éé"},
		{"😀😀", 1, "😀"},
		{"a\xffb", 10, "a\uFFFDb"},
		{"\xff\xfe", 1, "\uFFFD"}, // a run of invalid bytes is one U+FFFD
		{"", 5, ""},
	} {
		if got := cleanString(tc.in, tc.n); got != tc.want {
			t.Errorf("cleanString(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig: %v", err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{BatchRows: -1}, "BatchRows is -1; must be in [1, 100000]"},
		{Config{BatchRows: MaxBatchRows + 1}, "BatchRows is 100001"},
		{Config{MaxPayloadBytes: MaxPayloadLimit + 1}, "MaxPayloadBytes is 16777216; must be in [1, 16777215]"},
		{Config{PartitionDaysAhead: 400}, "PartitionDaysAhead is 400; must be in [1, 366]"},
		{Config{MaxPartitions: 2}, "MaxPartitions is 2; must be in [3, 8192]"},
		{Config{MaxPartitions: 9000}, "MaxPartitions is 9000"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Validate() = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
}

func TestOpenURL(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		url     string
		want    string // Go type of the sink, or "" for an error
		errText string
	}{
		{"sqlite:" + dir + "/a.db", "*sinks.SQLite", ""},
		{"sqlite://" + dir + "/b.db", "*sinks.SQLite", ""},
		{"mysql:root@tcp(127.0.0.1:3306)/eddy", "*sinks.MySQL", ""},
		{"stdout", "*sinks.NDJSON", ""},
		{"ndjson:" + dir + "/out.ndjson", "*sinks.NDJSON", ""},
		{"ndjson:-", "*sinks.NDJSON", ""},
		{"discard", "*sinks.Discard", ""},
		{"", "", "empty sink URL"},
		{"postgres://eddy:pw@127.0.0.1:5432/eddy?sslmode=disable", "*sinks.Postgres", ""},
		{"postgresql://127.0.0.1/eddy", "*sinks.Postgres", ""},
		{"clickhouse://eddy:pw@127.0.0.1:9000/eddy", "*sinks.ClickHouse", ""},
		{"clickhouse://127.0.0.1/eddy?compress=true&read_timeout=5", "*sinks.ClickHouse", ""},
		{"clickhouse:x", "", "clickhouse needs a URL"},
		{"clickhouse://", "", "clickhouse needs a URL"},
		{"clickhouse://eddy:s3cret@127.0.0.1:9000/", "", "names no database"},
		{"clickhouse://eddy:s3cret@127.0.0.1:9000/a/b", "", "one database name"},
		{"clickhouse://eddy:s3cret@127.0.0.1:9000/eddy?tls=1", "", `unknown option "tls"`},
		{"clickhouse://eddy:s3cret@127.0.0.1:9000/eddy?read_timeout=0", "", "not a positive number"},
		{"clickhouse://eddy:s3cret@127.0.0.1:9000/eddy?secure=yes", "", "not true or false"},
		{"clickhouse://eddy:s3cret@127.0.0.1:99x/eddy", "", "bad ClickHouse URL"},
		{"oracle://x", "", `unknown sink "oracle"`},
		{"postgres:x", "", "postgres needs a URL"},
		{"postgres://", "", "postgres needs a URL"},
		{"postgres://eddy:s3cret@127.0.0.1:5432/", "", "names no database"},
		{"postgres://eddy:s3cret@127.0.0.1:99999/eddy", "", "bad PostgreSQL URL"},
		{"sqlite:", "", "sqlite needs a file path"},
		{"sqlite:a.db?x=1", "", "contain no '?'"},
		{"mysql:", "", "mysql needs a DSN"},
		{"mysql:root@tcp(127.0.0.1:3306)/", "", "names no database"},
		{"mysql:root@tcp(127.0.0.1:3306", "", "bad MySQL DSN"},
		{"ndjson:", "", "ndjson needs a file path"},
		{"stdout:x", "", "stdout takes no argument"},
		{"discard:x", "", "discard takes no argument"},
		{"/tmp/eddy.db", "", "unknown sink"},
	} {
		s, err := Open(tc.url, Config{}, nil)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("Open(%q) = %v, want an error containing %q", tc.url, err, tc.errText)
			}
			if err != nil && strings.Contains(tc.errText, "sink") && !errors.Is(err, ErrBadURL) {
				t.Errorf("Open(%q): %v does not wrap ErrBadURL", tc.url, err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Open(%q): error shows the password: %v", tc.url, err)
			}
			if err != nil && errors.Is(err, ErrBadURL) && !strings.Contains(err.Error(), "mysql:DSN") {
				t.Errorf("Open(%q): error does not list the valid forms: %v", tc.url, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q): %v", tc.url, err)
			continue
		}
		if got := typeName(s); got != tc.want {
			t.Errorf("Open(%q) is a %s, want %s", tc.url, got, tc.want)
		}
	}
	if _, err := Open("sqlite:x.db", Config{BatchRows: -5}, nil); err == nil || !strings.Contains(err.Error(), "BatchRows") {
		t.Errorf("Open with a bad Config: %v, want the Validate error", err)
	}
}

func typeName(s Sink) string {
	switch s.(type) {
	case *SQLite:
		return "*sinks.SQLite"
	case *MySQL:
		return "*sinks.MySQL"
	case *Postgres:
		return "*sinks.Postgres"
	case *ClickHouse:
		return "*sinks.ClickHouse"
	case *NDJSON:
		return "*sinks.NDJSON"
	case *Discard:
		return "*sinks.Discard"
	}
	return "?"
}
