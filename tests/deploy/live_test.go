package deploy

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// startProcess starts a long-running process, logging to a file that is
// printed when the test fails; it is stopped (SIGINT, then kill) at cleanup.
func startProcess(t *testing.T, name string, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log (last lines):\n%s", name, lastLines(string(b), 20))
		}
	})
}

// syntheticCSV writes a small dataset in the seed-schema columns: three
// devices, one reading a minute, metrics that cross the work threshold, and
// one record with a non-numeric metric (a dead letter).
func syntheticCSV(t *testing.T, seed uint64) string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	b.WriteString("pboxid,event_time,metric,latitude,longitude\n")
	start := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range 600 {
		for _, dev := range []string{"d1", "d2", "d3"} {
			metric := fmt.Sprintf("%.2f", 20+r.Float64()*60)
			if i == 300 && dev == "d2" {
				metric = "n/a"
			}
			fmt.Fprintf(&b, "%s,%s,%s,57.1,-2.1\n", dev, start.Add(time.Duration(i)*time.Minute).Format("2006-01-02 15:04:05"), metric)
		}
	}
	path := filepath.Join(t.TempDir(), "data.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// promQuery runs an instant query and returns the result vector's size.
func promQuery(base, expr string) (int, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("%s: %s", body.Status, body.Error)
	}
	return len(body.Data.Result), nil
}

// grafanaVars replaces the dashboard's template variables the way Grafana
// does for "All" and a 1 s scrape interval.
func grafanaVars(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", "10s",
		"$job", ".*", "$instance", ".*", "$cluster", ".*", "$eddy_job", ".*",
	).Replace(expr)
}

// TestLivePrometheus runs a real Prometheus (the prometheus binary on PATH)
// with deploy/prometheus/prometheus.yml, its targets pointed at a live
// `eddy node` and a live job: every target is up, every alert
// rule evaluates without error on the real series, and every dashboard
// query and variable returns data. The job is `eddy run` with checkpoints
// against `eddy dev broker`, fed by `eddy replay`.
func TestLivePrometheus(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not on PATH (Debian: apt-get install prometheus); skipping the live scrape of eddy")
	}
	eddy := eddyBinary(t)
	dir := t.TempDir()

	// One node (a cluster of one) and one unbounded dev job.
	nodeHTTP := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, "eddy-node", eddy, "node", "--id", "n1", "--data-dir", filepath.Join(dir, "n1"),
		"--http-addr", nodeHTTP,
		"--raft-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--gossip-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--actor-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--bootstrap-expect", "1")
	// The production path: a broker, a replay into it, and eddy run with
	// checkpoints (so that the checkpoint and state series exist).
	broker := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, "eddy-broker", eddy, "dev", "broker", "--listen", broker, "--partitions", "4")
	eventually(t, 30*time.Second, "broker answers", func() error {
		out, err := exec.Command(eddy, "replay", "--brokers", broker, "--data", syntheticCSV(t, 1), "--quiet").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	spec := fmt.Sprintf(`name: iot-work
source:
  brokers: [%q]
sink: "sqlite:%s"
checkpoint:
  storage: "file://%s"
  interval: 1s
state:
  dir: %q
`, broker, filepath.Join(dir, "out.db"), filepath.Join(dir, "checkpoints"), filepath.Join(dir, "state"))
	specPath := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(specPath, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	jobMetrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, "eddy-run", eddy, "run", "--job", specPath, "--quiet", "--metrics-addr", jobMetrics)

	// The shipped configuration, with a 1 s interval and the live targets.
	var cfg map[string]any
	if err := yaml.Unmarshal(readFile(t, deployPath("prometheus", "prometheus.yml")), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["global"] = map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"}
	cfg["rule_files"] = []any{deployPath("prometheus", "alerts.yml")}
	live := map[string]string{"eddy-node": nodeHTTP, "eddy-job": jobMetrics}
	for _, sc := range l(t, cfg["scrape_configs"], "scrape_configs") {
		scm := m(t, sc, "scrape config")
		job := s(t, scm["job_name"], "job_name")
		target, ok := live[job]
		if !ok {
			t.Fatalf("prometheus.yml scrape job %q: no live process for it in this test", job)
		}
		scm["static_configs"] = []any{map[string]any{"targets": []any{target}}}
		delete(live, job)
	}
	if len(live) > 0 {
		t.Fatalf("prometheus.yml has no scrape job for %v", live)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	b, _ := yaml.Marshal(cfg)
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, "prometheus", promBin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	base := "http://" + promAddr

	// Targets up.
	eventually(t, time.Minute, "targets up", func() error {
		resp, err := http.Get(base + "/api/v1/targets")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				ActiveTargets []struct {
					ScrapePool string `json:"scrapePool"`
					Health     string `json:"health"`
					LastError  string `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return err
		}
		if len(body.Data.ActiveTargets) != 2 {
			return fmt.Errorf("%d targets", len(body.Data.ActiveTargets))
		}
		for _, tg := range body.Data.ActiveTargets {
			if tg.Health != "up" {
				return fmt.Errorf("%s: %s %s", tg.ScrapePool, tg.Health, tg.LastError)
			}
		}
		return nil
	})

	// The job has processed its input: every record counted.
	eventually(t, time.Minute, "job processed the data", func() error {
		n, err := promQuery(base, `eddy_records_received_total == 1800`)
		if err == nil && n != 1 {
			err = fmt.Errorf("eddy_records_received_total is not 1800 yet")
		}
		return err
	})
	// Enough samples for rate() over 10s windows.
	time.Sleep(11 * time.Second)

	// Dashboard queries and variables answer with data.
	d := loadDashboard(t)
	for title, exprs := range d.exprs() {
		for _, e := range exprs {
			q := grafanaVars(e)
			n, err := promQuery(base, q)
			if err != nil {
				t.Errorf("panel %q: %s: %v", title, q, err)
			} else if n == 0 {
				t.Errorf("panel %q: %s: no data", title, q)
			}
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([a-z_]+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		mm := labelValues.FindStringSubmatch(variableQuery(v.Query))
		if mm == nil {
			t.Errorf("variable %s: query %v is not label_values(selector, label)", v.Name, v.Query)
			continue
		}
		n, err := promQuery(base, fmt.Sprintf("count by (%s) (%s)", mm[2], grafanaVars(mm[1])))
		if err != nil || n == 0 {
			t.Errorf("variable %s: no values of %s on %s (%v)", v.Name, mm[2], mm[1], err)
		}
	}

	// Every alert rule evaluated on the real series without error.
	eventually(t, 30*time.Second, "alert rules evaluated", func() error {
		resp, err := http.Get(base + "/api/v1/rules")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name           string    `json:"name"`
						Health         string    `json:"health"`
						LastError      string    `json:"lastError"`
						State          string    `json:"state"`
						LastEvaluation time.Time `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return err
		}
		n := 0
		for _, g := range body.Data.Groups {
			for _, r := range g.Rules {
				n++
				if r.LastEvaluation.Year() < 2000 {
					return fmt.Errorf("%s not evaluated yet", r.Name)
				}
				if r.Health != "ok" {
					t.Fatalf("alert %s: health %s: %s", r.Name, r.Health, r.LastError)
				}
				if r.State == "firing" || r.State == "pending" {
					t.Logf("alert %s is %s on the live processes", r.Name, r.State)
				}
			}
		}
		if want := len(loadAlerts(t)); n != want {
			return fmt.Errorf("%d rules loaded, want %d", n, want)
		}
		return nil
	})
}
