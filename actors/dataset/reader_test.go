package dataset

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// readAll returns the records of r and the bad rows, as "line: value" and
// "line: error" texts.
func readAll(t *testing.T, r *Reader) (recs []Record, bad []*RowError) {
	t.Helper()
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return recs, bad
		}
		var re *RowError
		if errors.As(err, &re) {
			if !errors.Is(err, ErrBadRow) {
				t.Fatalf("RowError does not match ErrBadRow: %v", err)
			}
			bad = append(bad, re)
			continue
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		recs = append(recs, rec)
	}
}

func openString(t *testing.T, name, data string, opts Options) *Reader {
	t.Helper()
	r, err := OpenReader(name, strings.NewReader(data), opts)
	if err != nil {
		t.Fatalf("OpenReader: %v", err)
	}
	return r
}

func mustMapping(t *testing.T, s string) Mapping {
	t.Helper()
	m, err := ParseMapping(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCSVConversion is the contract of one CSV row → one message.
func TestCSVConversion(t *testing.T) {
	const header = "id;ts;val;lat;lon\n"
	opts := Options{Delimiter: ';', Mapping: mustMapping(t, "pboxid=id,event_time=ts,metric=val,latitude=lat,longitude=lon")}
	for _, tc := range []struct {
		name, row, key, value string
	}{
		{"all fields", `17079;2019-03-01T00:00:08;11.87;57.106;-2.088`, "17079",
			`{"event_time":"2019-03-01T00:00:08","metric":11.87,"pboxid":"17079","latitude":57.106,"longitude":-2.088}`},
		{"empty metric", `22885;2019-03-09T23:40:58;;57.269;-2.188`, "22885",
			`{"event_time":"2019-03-09T23:40:58","metric":"","pboxid":"22885","latitude":57.269,"longitude":-2.188}`},
		{"non-numeric metric", `1;2019-03-01 00:00:00;high;1;2`, "1",
			`{"event_time":"2019-03-01 00:00:00","metric":"high","pboxid":"1","latitude":1,"longitude":2}`},
		{"NaN metric is a string", `1;t;NaN;;`, "1",
			`{"event_time":"t","metric":"NaN","pboxid":"1"}`},
		{"empty latitude left out", `1;t;5;;-2.1`, "1",
			`{"event_time":"t","metric":5,"pboxid":"1","longitude":-2.1}`},
		{"empty longitude left out", `1;t;5;57.1;`, "1",
			`{"event_time":"t","metric":5,"pboxid":"1","latitude":57.1}`},
		{"bad latitude kept as string", `1;t;5;north;`, "1",
			`{"event_time":"t","metric":5,"pboxid":"1","latitude":"north"}`},
		{"integer pboxid text stays a string", `007;t;5;;`, "007",
			`{"event_time":"t","metric":5,"pboxid":"007"}`},
		{"empty pboxid and event_time", `;;5;;`, "",
			`{"event_time":"","metric":5,"pboxid":""}`},
		{"quoted values", `"17 079";"2019-03-01T00:00:08";"12.5";"57.1";"-2"`, "17 079",
			`{"event_time":"2019-03-01T00:00:08","metric":12.5,"pboxid":"17 079","latitude":57.1,"longitude":-2}`},
		{"quoted delimiter and quote", `"a;""b""";t;"1;5";;`, `a;"b"`,
			`{"event_time":"t","metric":"1;5","pboxid":"a;\"b\""}`},
		{"padded numbers", `1;t; 12.5 ;+57;.5`, "1",
			`{"event_time":"t","metric":12.5,"pboxid":"1","latitude":57,"longitude":0.5}`},
		{"raw pboxid keeps spaces", ` 1 ;t;5;;`, " 1 ",
			`{"event_time":"t","metric":5,"pboxid":" 1 "}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := openString(t, "x.csv", header+tc.row+"\n", opts)
			recs, bad := readAll(t, r)
			if len(bad) != 0 || len(recs) != 1 {
				t.Fatalf("got %d records, bad rows %v", len(recs), bad)
			}
			rec := recs[0]
			if string(rec.Key) != tc.key || rec.Key == nil {
				t.Errorf("key = %q (nil %v), want %q", rec.Key, rec.Key == nil, tc.key)
			}
			if string(rec.Value) != tc.value {
				t.Errorf("value =\n  %s\nwant\n  %s", rec.Value, tc.value)
			}
			if rec.Line != 2 {
				t.Errorf("line = %d, want 2", rec.Line)
			}
		})
	}
}

func TestCSVBadRows(t *testing.T) {
	data := "pboxid,event_time,metric\n" + // line 1
		"a,t1,1\n" + // 2
		"b,t2\n" + // 3: too few
		"c,\"multi\nline\",3\n" + // 4-5: one record over two lines
		"d,t4,4,extra\n" + // 6: too many
		"\n" + // 7: blank, skipped by encoding/csv
		"e,t5,5\n" + // 8
		"f,bad\"quote,6\n" + // 9: bare quote
		"g,t7,7" // 10, no final newline
	r := openString(t, "x.csv", data, Options{})
	recs, bad := readAll(t, r)
	var got []string
	for _, rec := range recs {
		got = append(got, fmt.Sprintf("%d:%s", rec.Line, rec.Key))
	}
	if want := "[2:a 4:c 8:e 10:g]"; fmt.Sprint(got) != want {
		t.Errorf("records at %v, want %s", got, want)
	}
	var lines []int
	for _, b := range bad {
		lines = append(lines, b.Line)
	}
	if fmt.Sprint(lines) != "[3 6 9]" {
		t.Errorf("bad rows at lines %v, want [3 6 9]", lines)
	}
	if len(bad) >= 2 && (!errors.Is(bad[0], ErrColumnCount) || !strings.Contains(bad[0].Error(), "line 3: wrong number of columns: 2 fields, the header has 3")) {
		t.Errorf("bad row error = %v", bad[0])
	}
	if r.Rows() != 7 {
		t.Errorf("Rows() = %d, want 7 (4 good + 3 bad)", r.Rows())
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next after EOF = %v, want io.EOF", err)
	}
	r.Close()
	if _, err := r.Next(); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func gz(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestGzipAndPlain: the same content plain, gzip-compressed with a .gz name,
// and gzip-compressed under a plain name (detected by magic bytes) gives the
// same records; a .gz name with plain content is read as plain.
func TestGzipAndPlain(t *testing.T) {
	const data = "pboxid,event_time,metric,latitude,longitude\nA,2019-03-01 00:00:00,1.5,57,-2\nB,2019-03-01 00:00:01,x,,\n"
	dir := t.TempDir()
	files := map[string][]byte{
		"plain.csv":       []byte(data),
		"zipped.csv.gz":   gz(t, data),
		"magic-only.csv":  gz(t, data),
		"misnamed.csv.gz": []byte(data),
		"UPPER.CSV.GZ":    gz(t, data),
	}
	var want string
	for _, name := range []string{"plain.csv", "zipped.csv.gz", "magic-only.csv", "misnamed.csv.gz", "UPPER.CSV.GZ"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, files[name], 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		recs, bad := readAll(t, r)
		if read, size := r.Progress(); read != size || size != int64(len(files[name])) {
			t.Errorf("%s: Progress = %d/%d, want %d/%d", name, read, size, len(files[name]), len(files[name]))
		}
		r.Close()
		var got []string
		for _, rec := range recs {
			got = append(got, fmt.Sprintf("%d %s %s", rec.Line, rec.Key, rec.Value))
		}
		if len(bad) != 0 || len(recs) != 2 {
			t.Fatalf("%s: %d records, bad %v", name, len(recs), bad)
		}
		if want == "" {
			want = strings.Join(got, "\n")
			continue
		}
		if strings.Join(got, "\n") != want {
			t.Errorf("%s:\n%s\nwant\n%s", name, strings.Join(got, "\n"), want)
		}
	}
	if !strings.Contains(want, `B {"event_time":"2019-03-01 00:00:01","metric":"x","pboxid":"B"}`) {
		t.Errorf("unexpected records:\n%s", want)
	}

	// Corrupt gzip: a fatal error, not a bad row, and sticky.
	bad := gz(t, strings.Repeat(data, 200))
	bad = bad[:len(bad)/2]
	r, err := OpenReader("c.csv.gz", bytes.NewReader(bad), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var fatal error
	for fatal == nil {
		_, fatal = r.Next()
		if errors.Is(fatal, ErrBadRow) {
			fatal = nil
		}
	}
	if errors.Is(fatal, io.EOF) {
		t.Fatalf("truncated gzip read to a clean EOF")
	}
	if _, again := r.Next(); again != fatal {
		t.Errorf("error not sticky: %v then %v", fatal, again)
	}
}

func TestNDJSON(t *testing.T) {
	data := strings.Join([]string{
		`{"id":"17079","ts":"2019-03-01 00:00:08","v":11.87,"la":57.106,"lo":-2.088}`, // 1
		``, // 2: blank, skipped
		`{"id":17079,"ts":1551398408000,"v":"12.5","la":"","lo":null}`, // 3
		`[1,2,3]`,                    // 4: not an object
		`{"id":"x","ts":"t","v":""}`, // 5
		`{"id":"x",`,                 // 6: truncated
		`  {"ts":"t","v":true,"la":{"a":1},"extra":"ignored"}  `, // 7: pboxid missing
		`null`, // 8
		`{"id":"q\"u\u00e9","ts":"t","v":"NaN","id":"last-wins"}`, // 9
		`{"id":"y","ts":"t","v":1} {"id":"z"}`,                    // 10: trailing data
	}, "\n")
	m := mustMapping(t, "pboxid=id,event_time=ts,metric=v,latitude=la,longitude=lo")
	for _, name := range []string{"x.ndjson", "x.jsonl", "x.json", "x.ndjson.gz"} {
		in := []byte(data)
		if strings.HasSuffix(name, ".gz") {
			in = gz(t, data)
		}
		r, err := OpenReader(name, bytes.NewReader(in), Options{Mapping: m})
		if err != nil {
			t.Fatal(err)
		}
		if r.Format() != FormatNDJSON {
			t.Fatalf("%s: format %q", name, r.Format())
		}
		recs, bad := readAll(t, r)
		var got []string
		for _, rec := range recs {
			got = append(got, fmt.Sprintf("%d [%s] %s %s", rec.Line, rec.Key, rec.EventTime, rec.Value))
		}
		want := []string{
			`1 [17079] 2019-03-01 00:00:08 {"event_time":"2019-03-01 00:00:08","metric":11.87,"pboxid":"17079","latitude":57.106,"longitude":-2.088}`,
			`3 [17079] 1551398408000 {"event_time":1551398408000,"metric":12.5,"pboxid":17079}`,
			`5 [x] t {"event_time":"t","metric":"","pboxid":"x"}`,
			`7 [] t {"event_time":"t","metric":true,"latitude":{"a":1}}`,
			`9 [last-wins] t {"event_time":"t","metric":"NaN","pboxid":"last-wins"}`,
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: records\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		var lines []int
		for _, b := range bad {
			lines = append(lines, b.Line)
			if !errors.Is(b, ErrNotObject) {
				t.Errorf("%s: bad row %v does not wrap ErrNotObject", name, b)
			}
		}
		if fmt.Sprint(lines) != "[4 6 8 10]" {
			t.Errorf("%s: bad rows at %v, want [4 6 8 10]", name, lines)
		}
	}

	// A line longer than the read buffer.
	long := `{"pboxid":"` + strings.Repeat("p", 600<<10) + `","event_time":"t","metric":1}` + "\n"
	r := openString(t, "l.ndjson", long+long, Options{})
	recs, bad := readAll(t, r)
	if len(recs) != 2 || len(bad) != 0 || len(recs[1].Key) != 600<<10 || recs[1].Line != 2 {
		t.Fatalf("long lines: %d records, %d bad", len(recs), len(bad))
	}
}

func TestParseMapping(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"", "pboxid=pboxid,event_time=event_time,metric=metric,latitude=latitude,longitude=longitude", ""},
		{AberdeenMapping, "pboxid=sensor_id,event_time=timestamp,metric=P1,latitude=lat,longitude=lon", ""},
		{" pboxid = id , metric=v ", "pboxid=id,event_time=event_time,metric=v,latitude=latitude,longitude=longitude", ""},
		{"latitude=,longitude=", "pboxid=pboxid,event_time=event_time,metric=metric,latitude=,longitude=", ""},
		{"device=id", "", `unknown field "device": want pboxid, event_time, metric, latitude or longitude`},
		{"pboxid", "", `entry "pboxid": want field=column`},
		{"pboxid=", "", "pboxid is required"},
		{"metric=a,metric=b", "", `field "metric" mapped twice`},
	} {
		m, err := ParseMapping(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseMapping(%q): %v", tc.in, err)
		case tc.err == "" && m.String() != tc.want:
			t.Errorf("ParseMapping(%q) = %s, want %s", tc.in, m, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrMapping)):
			t.Errorf("ParseMapping(%q) error = %v, want one with %q wrapping ErrMapping", tc.in, err, tc.err)
		}
	}
}

// TestMappingAgainstHeader: mapping errors at Open name the available
// columns; identity-mapped coordinates are optional.
func TestMappingAgainstHeader(t *testing.T) {
	for _, tc := range []struct {
		name, data, mapping string
		delim               rune
		err                 string // "" = opens
		value               string // of the first record when it opens
	}{
		{"identity without coordinates", "pboxid,event_time,metric\na,t,1\n", "", 0, "",
			`{"event_time":"t","metric":1,"pboxid":"a"}`},
		{"missing required column", "id,time,value\na,t,1\n", "pboxid=id,event_time=time,metric=P1", 0,
			`metric=P1: the header has no column "P1"; available columns: id, time, value`, ""},
		{"identity on a foreign header", "sensor_id,timestamp,P1\na,t,1\n", "", 0,
			`pboxid=pboxid: the header has no column "pboxid"; available columns: sensor_id, timestamp, P1`, ""},
		{"explicit coordinate missing", "id,time,value\na,t,1\n", "pboxid=id,event_time=time,metric=value,latitude=lat", 0,
			`latitude=lat: the header has no column "lat"`, ""},
		{"coordinates switched off", "id,time,value,lat\na,t,1,5\n", "pboxid=id,event_time=time,metric=value,latitude=", 0, "",
			`{"event_time":"t","metric":1,"pboxid":"a"}`},
		{"wrong delimiter hint", "sensor_id;timestamp;P1\na;t;1\n", AberdeenMapping, ',',
			`is the delimiter ',' right?`, ""},
		{"byte order mark", "\uFEFFpboxid,event_time,metric\na,t,1\n", "", 0, "",
			`{"event_time":"t","metric":1,"pboxid":"a"}`},
		{"empty input", "", "", 0, "empty input", ""},
		{"bad delimiter", "a\n", "", '"', "delimiter", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := OpenReader("x.csv", strings.NewReader(tc.data), Options{Delimiter: tc.delim, Mapping: mustMapping(t, tc.mapping)})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rec, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if string(rec.Value) != tc.value {
				t.Errorf("value = %s, want %s", rec.Value, tc.value)
			}
		})
	}
	// A hand-built mapping without required fields.
	if _, err := OpenReader("x.csv", strings.NewReader("a\n"), Options{Mapping: Mapping{PboxID: "a"}}); !errors.Is(err, ErrMapping) {
		t.Errorf("incomplete Mapping literal: err = %v, want ErrMapping", err)
	}
}

func TestFormatOf(t *testing.T) {
	for name, want := range map[string]Format{
		"a.csv": FormatCSV, "dir.d/a.CSV.gz": FormatCSV, "a.ndjson": FormatNDJSON, "a.jsonl.gz": FormatNDJSON,
		"a.json": FormatNDJSON, "a.txt": "", "a.gz": "", "csv": "",
	} {
		got, err := FormatOf(name)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("FormatOf(%q) = %q, %v; want %q", name, got, err, want)
		}
		if err != nil && !errors.Is(err, ErrFormat) {
			t.Errorf("FormatOf(%q) error %v does not wrap ErrFormat", name, err)
		}
	}
	// An explicit format overrides the name.
	r, err := OpenReader("data.txt", strings.NewReader(`{"pboxid":"a","event_time":"t","metric":1}`), Options{Format: FormatNDJSON})
	if err != nil {
		t.Fatal(err)
	}
	if recs, _ := readAll(t, r); len(recs) != 1 {
		t.Fatalf("explicit ndjson format: %d records", len(recs))
	}
	if _, err := OpenReader("data.txt", strings.NewReader(""), Options{Format: "xml"}); !errors.Is(err, ErrFormat) {
		t.Fatalf("format xml: err = %v, want ErrFormat", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.csv"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v, want ErrNotExist", err)
	}
}

// TestAberdeenEmbedded: the embedded file converts completely: 929,022
// records, no bad rows, the one empty P1 at line 65,965, keys = sensor ids.
func TestAberdeenEmbedded(t *testing.T) {
	r, err := Open(EmbeddedAberdeen, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var n, bad, emptyMetric int
	devices := map[string]int{}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, ErrBadRow) {
			bad++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		devices[string(rec.Key)]++
		if bytes.Contains(rec.Value, []byte(`"metric":""`)) {
			emptyMetric++
			if want := `{"event_time":"2019-03-09T23:40:58","metric":"","pboxid":"22885","latitude":57.269,"longitude":-2.188}`; rec.Line != 65965 || string(rec.Value) != want {
				t.Errorf("empty metric at line %d: %s; want line 65965: %s", rec.Line, rec.Value, want)
			}
		}
		if n == 1 {
			if want := `{"event_time":"2019-03-01T00:00:08","metric":11.87,"pboxid":"17079","latitude":57.106,"longitude":-2.088}`; string(rec.Value) != want || rec.Line != 2 {
				t.Errorf("first record line %d %s, want line 2 %s", rec.Line, rec.Value, want)
			}
		}
	}
	if n != 929022 || bad != 0 || emptyMetric != 1 || len(devices) != 23 {
		t.Fatalf("records %d, bad %d, empty metrics %d, devices %d; want 929022, 0, 1, 23", n, bad, emptyMetric, len(devices))
	}
	if read, size := r.Progress(); read != size {
		t.Errorf("Progress %d/%d at the end", read, size)
	}
}

func BenchmarkReadAberdeen(b *testing.B) {
	var n int
	for b.Loop() {
		r, err := Open(EmbeddedAberdeen, Options{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := r.Next()
			if err != nil {
				break
			}
			n++
		}
		r.Close()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
