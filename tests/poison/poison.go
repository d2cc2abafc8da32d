// Package poison is the poison-record input the end-to-end and fault tests
// share (tests/e2e TestPoisonFile and TestPoisonCluster, tests/faults
// TestPoisonUnderFaults): real Aberdeen readings with every poison case of
// issue 9 interleaved — out-of-range and far-future event times, metric
// overflow, a too-long, an invalid and an invalid-UTF-8 pboxid, an
// oversized record, an invalid metric, malformed JSON — and the check that
// each of them ends as a dead letter with its reason.
package poison

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
)

// Row is one poison record of the file and the dead-letter reason it must
// end as ("" = a valid reading; Skipped = a line the replayer cannot send).
// Line returns the record's NDJSON text given the event time and pboxid of
// the reading before it.
type Row struct {
	Line   func(prevTime, prevID string) string
	Reason string
}

// Skipped is the Row.Reason of a line `eddy replay` skips (not JSON).
const Skipped = "skipped"

// MaxMessageBytes is the format.max_message_bytes (--max-message-bytes) the
// "oversized" row is meant for: the other rows are below it.
const MaxMessageBytes = 4096

func obj(eventTime, metric, pboxid string) string {
	return `{"event_time":` + eventTime + `,"metric":` + metric + `,"pboxid":` + pboxid + `}`
}

func q(s string) string { b, _ := json.Marshal(s); return string(b) }

// Rows are the cases of issue 9 that used to pass the operators and stop a
// partition in the SQL sink, or to stop its watermark for good. The two
// future_event_time rows are dead letters only with event_time.max_future
// set (1h in the tests); without it they are valid readings.
var Rows = []Row{
	{func(_, id string) string { return obj(q("0999-06-01 12:00:00"), "5", q(id)) }, "event_time_out_of_range"},
	{func(_, id string) string { return obj(q("9999-12-31 23:59:30"), "5", q(id)) }, "event_time_out_of_range"}, // window ends at 10000-01-01
	{func(_, id string) string { return obj(q("9999-06-01 00:00:00"), "5", q(id)) }, "future_event_time"},
	{func(_, id string) string { return obj(q("2106-02-07T06:28:16Z"), "5", q(id)) }, "future_event_time"}, // wrapped uint32 clock
	{func(ts, id string) string { return obj(q(ts), "1e308", q(id)) }, "metric_out_of_range"},
	{func(ts, id string) string { return obj(q(ts), "1e308", q(id)) }, "metric_out_of_range"}, // the same window: sum would be +Inf
	{func(ts, _ string) string { return obj(q(ts), "5", q(strings.Repeat("p", 65))) }, "pboxid_too_long"},
	{func(ts, _ string) string { return obj(q(ts), "60", q("dev")) }, ""},
	{func(ts, _ string) string { return obj(q(ts), "61", q("dev ")) }, "invalid_pboxid"}, // PAD SPACE would make it "dev"
	{func(ts, _ string) string { return obj(q(ts), "62", q("dev")) }, ""},
	{func(ts, _ string) string { return obj(q(ts), "5", `"de\u0001v"`) }, "invalid_pboxid"},
	{func(ts, _ string) string { return obj(q(ts), "5", "\"dev\xff\"") }, "invalid_pboxid"}, // invalid UTF-8: U+FFFD on the way
	{func(ts, id string) string { return obj(q(ts), q(strings.Repeat("9", 5000)), q(id)) }, "oversized"},
	{func(ts, id string) string { return obj(q(ts), q("abc"), q(id)) }, "invalid_metric"},
	{func(ts, _ string) string { return `{"event_time":` + q(ts) + `,"metric":1,` }, Skipped}, // malformed JSON
}

// File writes dir/poison.ndjson: the first n Aberdeen readings as
// seed-schema NDJSON with the next of Rows after every step readings (n ≥
// len(Rows)·step, or t fails). It returns the path, the expected dead-letter
// reason of every sent record by 1-based record number (the oracle's
// DeadLetter.Line), and the number of lines the replayer must skip.
func File(t testing.TB, dir string, n, step int) (string, map[int64]string, int64) {
	t.Helper()
	zr, err := gzip.NewReader(aberdeen.Open())
	if err != nil {
		t.Fatal(err)
	}
	cr := csv.NewReader(zr)
	cr.Comma = aberdeen.Delimiter
	hdr, err := cr.Read()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range hdr {
		col[h] = i
	}
	var b bytes.Buffer
	want := map[int64]string{}
	var sent, skipped int64
	next := 0
	for i := 0; i < n; i++ {
		row, err := cr.Read()
		if err == io.EOF {
			t.Fatalf("Aberdeen has fewer than %d rows", n)
		}
		if err != nil {
			t.Fatal(err)
		}
		ts, id := row[col["timestamp"]], row[col["sensor_id"]]
		fmt.Fprintf(&b, `{"event_time":%q,"metric":%s,"pboxid":%q,"latitude":%s,"longitude":%s}`+"\n",
			ts, row[col["P1"]], id, row[col["lat"]], row[col["lon"]])
		sent++
		if (i+1)%step == 0 && next < len(Rows) {
			p := Rows[next]
			next++
			b.WriteString(p.Line(ts, id) + "\n")
			if p.Reason == Skipped {
				skipped++
				continue
			}
			sent++
			if p.Reason != "" {
				want[sent] = p.Reason
			}
		}
	}
	if next != len(Rows) {
		t.Fatalf("only %d of %d poison rows fit in %d readings", next, len(Rows), n)
	}
	path := filepath.Join(dir, "poison.ndjson")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, want, skipped
}

// WithoutGuard returns the expected dead letters of want when
// event_time.max_future is off: the far-future readings are then valid.
func WithoutGuard(want map[int64]string) map[int64]string {
	off := map[int64]string{}
	for rec, reason := range want {
		if reason != "future_event_time" {
			off[rec] = reason
		}
	}
	return off
}

// CheckDeadLetters fails t unless the oracle w has exactly the dead letters
// of want (by record number, with their reasons) and got, a sink's tables,
// has each of them at its partition and offset with the same reason and no
// other. got.DeadLetterRecords must come from the sink as stored (one entry
// per row), so a dead letter written twice shows as a duplicate.
func CheckDeadLetters(t testing.TB, got, w *oracle.Result, want map[int64]string) {
	t.Helper()
	if len(w.DeadLetterRecords) != len(want) {
		t.Fatalf("oracle: %d dead letters %+v, want %d", len(w.DeadLetterRecords), w.DeadLetterRecords, len(want))
	}
	type key struct {
		p int32
		o int64
	}
	sinkReason := map[key]string{}
	for _, d := range got.DeadLetterRecords {
		k := key{d.Partition, d.Offset}
		if _, dup := sinkReason[k]; dup {
			t.Errorf("sink: partition %d offset %d is a dead letter twice", d.Partition, d.Offset)
		}
		sinkReason[k] = d.Reason
	}
	if len(sinkReason) != len(want) {
		t.Fatalf("sink: %d dead letters %+v, want %d", len(sinkReason), got.DeadLetterRecords, len(want))
	}
	for _, d := range w.DeadLetterRecords {
		if oracle.ReasonLabel(d.Reason) != want[d.Line] {
			t.Errorf("record %d: oracle reason %q, want %s", d.Line, d.Reason, want[d.Line])
		}
		r, ok := sinkReason[key{d.Partition, d.Offset}]
		if !ok {
			t.Errorf("record %d (partition %d offset %d, %s) is no dead letter in the sink", d.Line, d.Partition, d.Offset, want[d.Line])
		} else if oracle.ReasonLabel(r) != want[d.Line] {
			t.Errorf("record %d (partition %d offset %d): sink reason %q, want %s", d.Line, d.Partition, d.Offset, r, want[d.Line])
		}
	}
}
