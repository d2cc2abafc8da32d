package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eddy-iot/eddy/operators"
)

func TestNDJSONFormat(t *testing.T) {
	var out bytes.Buffer
	s := NewNDJSON(&out)
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	b := sampleBatch()
	b.Readings = b.Readings[:3]
	b.DeadLetters = b.DeadLetters[:2]
	b.WorkPeriods = b.WorkPeriods[:1]
	b.Windows = b.Windows[1:]
	mustWrite(t, s, b)
	if out.Len() != 0 {
		t.Errorf("%d bytes written before Flush; output is buffered", out.Len())
	}
	mustFlush(t, s)
	want := `{"table":"readings","source_partition":0,"source_offset":7,"pboxid":"17079","event_time":"2019-03-01T00:00:08.123Z","metric":11.87,"latitude":57.106,"longitude":-2.088,"company":"Acme","site":"Dyce"}
{"table":"readings","source_partition":0,"source_offset":8,"pboxid":"17079","event_time":"2019-03-01T00:02:38.999Z","metric":0.30000000000000004,"latitude":null,"longitude":null,"company":"","site":""}
{"table":"readings","source_partition":1,"source_offset":0,"pboxid":"ümlaut-😀","event_time":"1969-12-31T23:59:59.001Z","metric":-1e+300,"latitude":-90,"longitude":180,"company":"O'Brien \"quoted\" \\ back","site":"line\nbreak"}
{"table":"window_aggregates","pboxid":"17080","window_start":"2019-03-01T00:00:00.000Z","window_end":"2019-03-01T00:01:00.000Z","count":1,"sum":3,"min":3,"max":3,"avg":3,"latitude":null,"longitude":null,"company":"","site":""}
{"table":"work_periods","pboxid":"17079","period_start":"2019-03-01T10:00:00.500Z","period_end":"2019-03-01T10:30:00.000Z","duration_s":1799.5,"samples":13,"avg_metric":61.2,"max_metric":80.5,"company":"Acme","site":"Dyce"}
{"table":"late_records","source_partition":0,"source_offset":99,"pboxid":"17079","event_time":"2019-03-01T00:00:01.000Z","watermark":"2019-03-01T01:00:00.250Z","reason":"late","payload":"{\"event_time\":\"2019-03-01 00:00:01\",\"metric\":1,\"pboxid\":\"17079\"}","payload_bytes":64}
{"table":"dead_letters","source_partition":0,"source_offset":100,"reason":"bad json: unexpected end","payload":"{\"metric\":","payload_bytes":10}
{"table":"dead_letters","source_partition":0,"source_offset":101,"reason":"not utf-8","payload_base64":"//4AJ1wagA==","payload_bytes":7}
`
	if got := out.String(); got != want {
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("line %d:\n got %s\nwant %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
	// Every line is valid JSON with a table field.
	for i, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v", i+1, err)
		}
		if _, ok := m["table"].(string); !ok {
			t.Fatalf("line %d has no table field", i+1)
		}
	}
}

func TestNDJSONStringEscaping(t *testing.T) {
	for _, in := range []string{"plain", "\x00\x01\x1f\"\\/", "tab\tcr\r", "bad \xff\xfe utf8", "é😀\u2028"} {
		got := appendJSONString(nil, in)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%q encodes to invalid JSON %s: %v", in, got, err)
			continue
		}
		if want := strings.ToValidUTF8(in, "\uFFFD"); back != want && !strings.Contains(in, "\xff") {
			t.Errorf("%q round-trips to %q", in, back)
		}
	}
}

func TestNDJSONFileAndLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s, err := Open("ndjson:"+path, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Write(ctx, sampleBatch()); !errors.Is(err, ErrNotOpen) {
		t.Errorf("Write before Open: %v, want ErrNotOpen", err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, &Batch{Readings: benchReadings(0, 3000)})
	if err := s.Close(); err != nil { // Close flushes
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Write(ctx, sampleBatch()); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n != 3000 {
		t.Fatalf("file has %d lines, want 3000", n)
	}
	// A second sink appends.
	s2, _ := Open("ndjson:"+path, Config{}, nil)
	if err := s2.Open(ctx); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s2, &Batch{DeadLetters: []operators.DeadLetter{{Reason: "x"}}})
	mustFlush(t, s2)
	data, _ = os.ReadFile(path)
	if n := bytes.Count(data, []byte("\n")); n != 3001 {
		t.Fatalf("file has %d lines after append, want 3001", n)
	}
	s2.Close()
}

func TestDiscard(t *testing.T) {
	d := NewDiscard()
	ctx := context.Background()
	if err := d.Write(ctx, sampleBatch()); !errors.Is(err, ErrNotOpen) {
		t.Errorf("Write before Open: %v, want ErrNotOpen", err)
	}
	if err := d.Open(ctx); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, d, sampleBatch())
	mustWrite(t, d, sampleBatch())
	mustFlush(t, d)
	if got, want := d.Rows(), int64(2*sampleBatch().Len()); got != want {
		t.Errorf("Rows() = %d, want %d", got, want)
	}
	d.Close()
	if err := d.Write(ctx, sampleBatch()); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
}
