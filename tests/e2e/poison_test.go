package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
	"github.com/eddy-iot/eddy/tests/poison"
)

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
	data, want, skipped := poison.File(t, dir, 20_000, 1_000)
	opts := oracle.DefaultOptions()
	opts.Format = oracle.FormatNDJSON
	opts.MaxMessageBytes = poison.MaxMessageBytes
	maxBytes := fmt.Sprint(poison.MaxMessageBytes)

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
	t.Run("sqlite guard on", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "poison.db")
		_, w := run(t, "sqlite:"+db, true)
		if w.Late != 0 {
			t.Fatalf("oracle: %d late records; no poison row may move a watermark", w.Late)
		}
		got := loadSQLite(t, db)
		poison.CheckDeadLetters(t, got, w, want)
		compare(t, got, w)
	})

	t.Run("sqlite guard off", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "poison.db")
		_, w := run(t, "sqlite:"+db, false)
		if w.Late == 0 {
			t.Fatalf("oracle: no late record with the guard off; the far-future rows should have moved their watermarks")
		}
		got := loadSQLite(t, db)
		poison.CheckDeadLetters(t, got, w, poison.WithoutGuard(want))
		compare(t, got, w)
	})

	for _, guard := range []bool{true, false} {
		t.Run(map[bool]string{true: "mariadb guard on", false: "mariadb guard off"}[guard], func(t *testing.T) {
			dsn := mariadbtest.DSN(t)
			_, w := run(t, "mysql:"+dsn, guard)
			reasons := want
			if !guard {
				reasons = poison.WithoutGuard(want)
			}
			got, err := oracle.LoadMySQL(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			poison.CheckDeadLetters(t, got, w, reasons)
			compare(t, got, w)
		})
	}
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
	data, want, _ := poison.File(t, dir, 20_000, 1_000)
	opts := oracle.DefaultOptions()
	opts.Format = oracle.FormatNDJSON
	opts.Partitions = partitions
	opts.MaxMessageBytes = poison.MaxMessageBytes
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
	if w.Late != 0 {
		t.Fatalf("oracle: %d late records; no poison row may move a watermark", w.Late)
	}
	poison.CheckDeadLetters(t, got, w, want)
}
