package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/tests/chtest"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
	"github.com/eddy-iot/eddy/tests/pgtest"
)

// eddy runs the eddy binary to completion and returns its combined output.
func eddy(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, eddyBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("eddy %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestRunJobSpecAgainstBrokerProcess is the production path as separate
// processes: `eddy dev broker` as the Kafka, `eddy replay` into it, and
// `eddy run --job spec.yaml --bounded` into MariaDB; the tables equal the
// oracle.
func TestRunJobSpecAgainstBrokerProcess(t *testing.T) {
	dsn := mariadbtest.DSN(t)
	runJobSpec(t, "mysql:"+dsn, func() (*oracle.Result, error) { return oracle.LoadMySQL(context.Background(), dsn) })
}

// TestRunJobSpecIntoPostgres is the same production path into PostgreSQL
// (a postgres:// sink), and `eddy verify` on the spec, reading the sink by
// its URL, agrees.
func TestRunJobSpecIntoPostgres(t *testing.T) {
	url := pgtest.URL(t)
	spec, data, mapping := runJobSpec(t, url, func() (*oracle.Result, error) { return oracle.LoadPostgres(context.Background(), url) })
	out := eddy(t, "verify", "--job", spec, "--data", data, "--map", mapping, "--partitions", "6")
	t.Log(out)
	if strings.Contains(out, "eddy:eddy@") {
		t.Errorf("eddy verify printed the sink password:\n%s", out)
	}
}

// TestRunJobSpecIntoClickHouse is the same production path into ClickHouse
// (a clickhouse:// sink), and `eddy verify` on the spec, reading the sink by
// its URL with FINAL, agrees.
func TestRunJobSpecIntoClickHouse(t *testing.T) {
	url := chtest.URL(t)
	spec, data, mapping := runJobSpec(t, url, func() (*oracle.Result, error) { return oracle.LoadClickHouse(context.Background(), url) })
	out := eddy(t, "verify", "--job", spec, "--data", data, "--map", mapping, "--partitions", "6")
	t.Log(out)
	if strings.Contains(out, "eddy:eddy@") {
		t.Errorf("eddy verify printed the sink password:\n%s", out)
	}
}

// runJobSpec replays seeded data into a broker process, runs the job spec
// with sink into it to the end, and compares what load reads with the
// oracle. It returns the spec, data file and mapping.
func runJobSpec(t *testing.T, sink string, load func() (*oracle.Result, error)) (spec, data, mapping string) {
	s := seed(t)
	dir := t.TempDir()
	addr := harness.StartBroker(t, eddyBin, dir, 6)

	data = filepath.Join(dir, "data.csv")
	if err := os.WriteFile(data, synthetic(rand.New(rand.NewPCG(s, 7)), 3000, ",", false), 0o644); err != nil {
		t.Fatal(err)
	}
	mapping = "pboxid=box,event_time=when,metric=value,latitude=lat,longitude=lon"
	t.Log(eddy(t, "replay", "--brokers", addr, "--topic", "iot-topic", "--data", data, "--map", mapping, "--quiet"))

	spec = filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(spec, []byte(fmt.Sprintf(`name: iot-work
source:
  brokers: [%q]
  topic: iot-topic
window:
  size: 2m
work_periods:
  threshold: 45
  max_gap: 5m
sink: %q
`, addr, sink)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := eddy(t, "run", "--job", spec, "--bounded", "--metrics-addr", "", "--quiet")
	t.Log(out)
	if !strings.Contains(out, "(ok)") {
		t.Fatalf("summary does not balance:\n%s", out)
	}

	opts := oracle.DefaultOptions()
	opts.Mapping, _ = oracle.ParseMapping(mapping)
	opts.Partitions = 6
	opts.Window = oracle.WindowSpec{Kind: oracle.WindowTumbling, Size: 2 * time.Minute}
	opts.Threshold = 45
	opts.MaxGap = 5 * time.Minute
	want, err := oracle.ComputeFile(data, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := load()
	if err != nil {
		t.Fatal(err)
	}
	compare(t, got, want)
	return spec, data, mapping
}

// TestBadInputsGiveClearErrors checks that mistakes a user makes are
// reported with a message naming the problem, and exit non-zero.
func TestBadInputsGiveClearErrors(t *testing.T) {
	dir := t.TempDir()
	badSpec := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badSpec, []byte("name: x\nsource:\n  brokerz: [a]\nsink: discard\n"), 0o644)
	noBrokers := filepath.Join(dir, "nobrokers.yaml")
	os.WriteFile(noBrokers, []byte("sink: discard\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dev", "--bounded", "--window", "0s"}, "window size must be > 0"},
		{[]string{"dev", "--bounded", "--slide", "1m", "--session-gap", "1m"}, "exclude each other"},
		{[]string{"dev", "--bounded", "--delimiter", ";;"}, "--delimiter must be one character"},
		{[]string{"dev", "--bounded", "--map", "pboxid=a,nope=b"}, "nope"},
		{[]string{"dev", "--bounded", "--sink", "postgres:x"}, "sqlite:"},
		{[]string{"dev", "--bounded", "--data", filepath.Join(dir, "missing.csv")}, "missing.csv"},
		{[]string{"run", "--job", badSpec}, "brokerz"},
		{[]string{"run", "--job", noBrokers}, "brokers must not be empty"},
	} {
		cmd := exec.Command(eddyBin, c.args...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("eddy %s: exit 0, want an error", strings.Join(c.args, " "))
			continue
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("eddy %s: output %q does not mention %q", strings.Join(c.args, " "), out, c.want)
		}
	}
}
