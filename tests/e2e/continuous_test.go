package e2e

import (
	"bufio"
	"bytes"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// metricValue scrapes a metric from a /metrics endpoint: the sum of its
// series (a job's metrics carry the label eddy_job).
func metricValue(addr, name string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sum, found := 0.0, false
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %q: %v", name, line, err)
		}
		sum, found = sum+v, true
	}
	if !found {
		return 0, fmt.Errorf("metric %s not found", name)
	}
	return sum, nil
}

// TestContinuousModeRowsVisibleAndGracefulStop runs `eddy dev` unbounded:
// every reading becomes visible in the sink while the job keeps running
// (no final watermark, no stop needed), /metrics counts them, and SIGINT
// stops the job cleanly with exit 0.
func TestContinuousModeRowsVisibleAndGracefulStop(t *testing.T) {
	s := seed(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(data, synthetic(rand.New(rand.NewPCG(s, 3)), 2000, ",", false), 0o644); err != nil {
		t.Fatal(err)
	}
	const mapping = "pboxid=box,event_time=when,metric=value,latitude=lat,longitude=lon"
	opts := oracle.DefaultOptions()
	opts.Mapping, _ = oracle.ParseMapping(mapping)
	want, err := oracle.ComputeFile(data, opts)
	if err != nil {
		t.Fatal(err)
	}

	db := filepath.Join(dir, "out.db")
	metrics := harness.FreeAddr(t)
	cmd := exec.Command(eddyBin, "dev", "--data", data, "--map", mapping, "--sink", "sqlite:"+db,
		"--metrics-addr", metrics, "--quiet")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	harness.Eventually(t, time.Minute, func() error {
		v, err := metricValue(metrics, "eddy_records_received_total")
		if err != nil {
			return err
		}
		if int64(v) != want.Records {
			return fmt.Errorf("received %v of %d", v, want.Records)
		}
		return nil
	})
	conn, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	harness.Eventually(t, 10*time.Second, func() error {
		var n int64
		if err := conn.QueryRow("select count(*) from readings").Scan(&n); err != nil {
			return err
		}
		if n != want.Readings {
			return fmt.Errorf("%d readings visible, want %d", n, want.Readings)
		}
		return nil
	})

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("eddy dev after SIGINT: %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("eddy dev did not stop within 20s of SIGINT\n%s", out.String())
	}
	if !strings.Contains(out.String(), "(ok)") {
		t.Fatalf("no balanced summary after stop:\n%s", out.String())
	}
}
