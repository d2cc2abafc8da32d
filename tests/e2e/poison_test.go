package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

// poisonRow is one poison record of the poison file and the dead-letter
// reason it must end as ("" = a valid reading; "skipped" = a line the
// replayer cannot send).
type poisonRow struct {
	line   func(prevTime, prevID string) string
	reason string
}

func obj(eventTime, metric, pboxid string) string {
	return `{"event_time":` + eventTime + `,"metric":` + metric + `,"pboxid":` + pboxid + `}`
}

func q(s string) string { b, _ := json.Marshal(s); return string(b) }

// poisonRows are the cases of issue 9 that used to pass the operators and
// stop a partition in the SQL sink, or to stop its watermark for good.
var poisonRows = []poisonRow{
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
	{func(ts, _ string) string { return `{"event_time":` + q(ts) + `,"metric":1,` }, "skipped"}, // malformed JSON
}

// poisonFile writes the first n Aberdeen readings as seed-schema NDJSON with
// one poison row after every step readings, and returns the path and the
// expected dead-letter reason of every sent record (by 1-based record
// number), and the number of lines the replayer must skip.
func poisonFile(t *testing.T, dir string, n, step int) (string, map[int64]string, int64) {
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
		if (i+1)%step == 0 && next < len(poisonRows) {
			p := poisonRows[next]
			next++
			b.WriteString(p.line(ts, id) + "\n")
			if p.reason == "skipped" {
				skipped++
				continue
			}
			sent++
			if p.reason != "" {
				want[sent] = p.reason
			}
		}
	}
	if next != len(poisonRows) {
		t.Fatalf("only %d of %d poison rows fit in %d readings", next, len(poisonRows), n)
	}
	path := filepath.Join(dir, "poison.ndjson")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, want, skipped
}

// TestPoisonFile: the first 20,000 Aberdeen readings with every poison case
// interleaved, through `eddy dev --bounded` with the max_future guard on:
// the job finishes, every poison row is a dead letter with its reason (the
// same in the sink and in the oracle), valid + late + dead letters = input,
// nothing is late (no poison row moved a watermark), and every other row
// equals the oracle. Then the same file with the guard off, the bounded
// default: the two far-future readings are valid and make the rest of their
// partitions late, as the oracle says. Then into MariaDB, the store that
// rejects out-of-range values.
func TestPoisonFile(t *testing.T) {
	dir := t.TempDir()
	data, want, skipped := poisonFile(t, dir, 20_000, 1_000)
	opts := oracle.DefaultOptions()
	opts.Format = oracle.FormatNDJSON
	opts.MaxMessageBytes = 4096
	const maxBytes = "4096"

	run := func(t *testing.T, sink string, guard bool) (string, *oracle.Result) {
		o := opts
		args := []string{"--data", data, "--sink", sink, "--max-message-bytes", maxBytes}
		if guard {
			o.MaxFuture, o.Now = time.Hour, time.Now()
			args = append(args, "--max-future", "1h")
		}
		out := runDev(t, args...)
		w, err := oracle.ComputeFile(data, o)
		if err != nil {
			t.Fatal(err)
		}
		if w.Skipped != skipped {
			t.Fatalf("oracle skipped %d lines, want %d", w.Skipped, skipped)
		}
		if m := regexp.MustCompile(`(\d+) bad rows skipped`).FindStringSubmatch(out); m == nil || m[1] != fmt.Sprint(skipped) {
			t.Fatalf("replay did not skip %d bad rows:\n%s", skipped, out)
		}
		in := summaryCount(t, out, "input")
		v, l, d := summaryCount(t, out, "valid (on time)"), summaryCount(t, out, "late"), summaryCount(t, out, "dead letters")
		if in != w.Records || v+l+d != in || v != w.Readings || l != w.Late || d != w.DeadLetters {
			t.Fatalf("summary input %d valid %d late %d dead letters %d; oracle records %d readings %d late %d dead letters %d",
				in, v, l, d, w.Records, w.Readings, w.Late, w.DeadLetters)
		}
		return out, w
	}
	checkDeadLetters := func(t *testing.T, got, w *oracle.Result, want map[int64]string) {
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
			sinkReason[key{d.Partition, d.Offset}] = d.Reason
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

	t.Run("sqlite guard on", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "poison.db")
		_, w := run(t, "sqlite:"+db, true)
		if w.Late != 0 {
			t.Fatalf("oracle: %d late records; no poison row may move a watermark", w.Late)
		}
		got := loadSQLite(t, db)
		checkDeadLetters(t, got, w, want)
		compare(t, got, w)
	})

	t.Run("sqlite guard off", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "poison.db")
		_, w := run(t, "sqlite:"+db, false)
		if w.Late == 0 {
			t.Fatalf("oracle: no late record with the guard off; the far-future rows should have moved their watermarks")
		}
		got := loadSQLite(t, db)
		checkDeadLetters(t, got, w, reasonsFor(want, false))
		compare(t, got, w)
	})

	for _, guard := range []bool{true, false} {
		t.Run(map[bool]string{true: "mariadb guard on", false: "mariadb guard off"}[guard], func(t *testing.T) {
			dsn := mariadbtest.DSN(t)
			_, w := run(t, "mysql:"+dsn, guard)
			got, err := oracle.LoadMySQL(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			checkDeadLetters(t, got, w, reasonsFor(want, guard))
			compare(t, got, w)
		})
	}
}

// reasonsFor returns the expected dead letters with the max_future guard on
// or off (then the far-future readings are valid).
func reasonsFor(want map[int64]string, guard bool) map[int64]string {
	if guard {
		return want
	}
	off := map[int64]string{}
	for rec, reason := range want {
		if reason != "future_event_time" {
			off[rec] = reason
		}
	}
	return off
}

// TestPoisonRawMessages produces message values the replayer would never
// send — malformed JSON, raw invalid UTF-8 and control bytes, an empty
// value — straight into `eddy dev broker`, next to the other poison cases,
// and runs `eddy run --job spec.yaml --bounded` with event_time.max_future
// and format.max_message_bytes set in the spec: every poison message is a
// dead letter with its reason at its partition and offset, the valid ones
// are readings, and the summary balances.
func TestPoisonRawMessages(t *testing.T) {
	dir := t.TempDir()
	addr := harness.StartBroker(t, eddyBin, dir, 3)

	ok := func(sec int, id string) string {
		return fmt.Sprintf(`{"event_time":"2019-03-01 00:%02d:%02d","metric":%d,"pboxid":%q}`, sec/60, sec%60, 40+sec%30, id)
	}
	msgs := []struct{ key, value, reason string }{
		{"a", ok(1, "a"), ""},
		{"a", `{"event_time":"2019-03-01 00:00:08","metric":1,`, "malformed_json"},
		{"dev", "{\"event_time\":\"2019-03-01 00:00:09\",\"metric\":1,\"pboxid\":\"dev\xff\"}", "malformed_json"},
		{"dev", "{\"event_time\":\"2019-03-01 00:00:09\",\"metric\":1,\"pboxid\":\"de\x01v\"}", "malformed_json"},
		{"a", `[1,2]`, "malformed_json"},
		{"a", ``, "malformed_json"},
		{"b", ok(2, "b"), ""},
		{"a", `{"event_time":"2019-03-01 00:00:10","metric":1,"pboxid":"a\u0000"}`, "invalid_pboxid"},
		{"a", `{"event_time":"2019-03-01 00:00:10","metric":1,"pboxid":"a","x":"` + strings.Repeat("z", 300) + `"}`, "oversized"},
		{"a", `{"event_time":"2106-02-07T06:28:16Z","metric":1,"pboxid":"a"}`, "future_event_time"},
		{"b", `{"event_time":"9999-12-31 23:59:59.999","metric":1,"pboxid":"b"}`, "event_time_out_of_range"},
		{"b", `{"event_time":"0999-12-31 23:59:59.999","metric":1,"pboxid":"b"}`, "event_time_out_of_range"},
		{"b", `{"event_time":"2019-03-01 00:00:12","metric":1e308,"pboxid":"b"}`, "metric_out_of_range"},
		{"c", `{"event_time":"2019-03-01 00:00:12","metric":1,"pboxid":"` + strings.Repeat("c", 65) + `"}`, "pboxid_too_long"},
		{"c", ok(3, "c"), ""},
		{"a", ok(70, "a"), ""}, // on time: the future reading moved no watermark
		{"b", ok(75, "b"), ""},
	}
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.RequiredAcks = sarama.WaitForLocal
	prod, err := sarama.NewSyncProducer([]string{addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		p int32
		o int64
	}
	want := map[key]string{}
	valid := 0
	for _, m := range msgs {
		p, o, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "iot-topic", Key: sarama.StringEncoder(m.key), Value: sarama.ByteEncoder(m.value)})
		if err != nil {
			t.Fatal(err)
		}
		if m.reason == "" {
			valid++
		} else {
			want[key{p, o}] = m.reason
		}
	}
	prod.Close()

	db := filepath.Join(dir, "raw.db")
	spec := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(spec, []byte(fmt.Sprintf(`name: poison
source: {brokers: [%q], topic: iot-topic}
format: {max_message_bytes: 256}
event_time: {max_future: 1h}
sink: %q
`, addr, "sqlite:"+db)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := eddy(t, "run", "--job", spec, "--bounded", "--metrics-addr", "", "--quiet")
	t.Log(out)
	if !strings.Contains(out, "(ok)") {
		t.Fatalf("summary does not balance:\n%s", out)
	}
	got := loadSQLite(t, db)
	if got.Readings != int64(valid) || got.Late != 0 || got.DeadLetters != int64(len(want)) {
		t.Fatalf("readings %d late %d dead letters %d, want %d 0 %d", got.Readings, got.Late, got.DeadLetters, valid, len(want))
	}
	for _, d := range got.DeadLetterRecords {
		if r := want[key{d.Partition, d.Offset}]; oracle.ReasonLabel(d.Reason) != r {
			t.Errorf("partition %d offset %d: reason %q, want %s", d.Partition, d.Offset, d.Reason, r)
		}
	}
}

// TestGuardFlagErrors: bad watermark guard settings are refused with the
// flag or field named.
func TestGuardFlagErrors(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "idle.yaml")
	os.WriteFile(spec, []byte("source: {brokers: [127.0.0.1:1]}\nevent_time: {idle_timeout: 1m}\nsink: discard\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dev", "--max-future", "-1h"}, "--max-future must be >= 0 (0 = off), got -1h0m0s"},
		{[]string{"dev", "--max-future", "9000h"}, "--max-future must be at most 168h0m0s"},
		{[]string{"dev", "--bounded", "--idle-timeout", "1m"}, "--idle-timeout applies only to unbounded sources"},
		{[]string{"dev", "--idle-timeout", "-1s"}, "--idle-timeout must be >= 0"},
		{[]string{"run", "--job", spec, "--bounded"}, "event_time.idle_timeout applies only to unbounded sources"},
	} {
		out, err := exec.Command(eddyBin, c.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("eddy %s: %v, output %q; want an error mentioning %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}
}

// TestPoisonCluster: the poison file through a 3-node cluster job into
// MariaDB — replayed with `eddy replay`, the job submitted through the API
// with event_time.max_future and format.max_message_bytes in its spec and
// bounded at the replayed offsets: the sink comes to equal the oracle, and
// every poison row is a dead letter with its reason.
func TestPoisonCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	const partitions = 12
	dsn := mariadbtest.DSN(t)
	dir := t.TempDir()
	data, want, _ := poisonFile(t, dir, 20_000, 1_000)
	opts := oracle.DefaultOptions()
	opts.Format = oracle.FormatNDJSON
	opts.Partitions = partitions
	opts.MaxMessageBytes = 4096
	opts.MaxFuture, opts.Now = time.Hour, time.Now()
	w, err := oracle.ComputeFile(data, opts)
	if err != nil {
		t.Fatal(err)
	}

	broker := harness.StartBroker(t, eddyBin, dir, partitions)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := harness.StartReplay(t, eddyBin, broker, "--data", data).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	spec := harness.BoundedSpec("poison", broker, w, "mysql:"+dsn, "file://"+filepath.Join(dir, "checkpoints"),
		"format:\n  max_message_bytes: 4096\nevent_time:\n  max_future: 1h\n")
	c, err := harness.New(harness.Options{Binary: eddyBin, Dir: dir, Nodes: 3, BootstrapExpect: 3, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client(0, 30*time.Second).SubmitJob(ctx, "poison", []byte(spec), partitions); err != nil {
		t.Fatal(err)
	}
	// The sink creates its tables when a node opens it.
	harness.Eventually(t, time.Minute, func() error { _, err := oracle.LoadMySQL(ctx, dsn); return err })
	harness.WaitOracle(t, ctx, dsn, w, 2*time.Minute)
	if t.Failed() {
		for _, n := range c.Nodes {
			t.Logf("%s log:\n%s", n.ID, n.LogTail(40))
		}
		return
	}
	got, err := oracle.LoadMySQL(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		p int32
		o int64
	}
	sink := map[key]string{}
	for _, d := range got.DeadLetterRecords {
		sink[key{d.Partition, d.Offset}] = oracle.ReasonLabel(d.Reason)
	}
	if len(w.DeadLetterRecords) != len(want) || len(sink) != len(want) || w.Late != 0 {
		t.Fatalf("dead letters: oracle %d, sink %d, want %d; oracle late %d", len(w.DeadLetterRecords), len(sink), len(want), w.Late)
	}
	for _, d := range w.DeadLetterRecords {
		if r := sink[key{d.Partition, d.Offset}]; r != want[d.Line] || oracle.ReasonLabel(d.Reason) != want[d.Line] {
			t.Errorf("record %d: sink reason %q, oracle %q, want %s", d.Line, r, d.Reason, want[d.Line])
		}
	}
}
