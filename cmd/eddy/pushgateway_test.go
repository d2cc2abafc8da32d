package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/tests/freeport"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"
)

// pushgateway is a real prometheus-pushgateway process on a free loopback
// port, with basic auth (user eddy).
type pushgateway struct {
	addr, user, password string
}

// startPushgateway starts prometheus-pushgateway (Debian package
// prometheus-pushgateway) with metrics in memory only and basic auth. It
// skips without the binary, and fails without it when CI=true.
func startPushgateway(t *testing.T) *pushgateway {
	t.Helper()
	bin, err := exec.LookPath("prometheus-pushgateway")
	if err != nil {
		if v := strings.ToLower(os.Getenv("CI")); v == "true" || v == "1" {
			t.Fatal("prometheus-pushgateway not found; .ci/run installs it (apt-get install prometheus-pushgateway)")
		}
		t.Skip("prometheus-pushgateway not found (apt-get install prometheus-pushgateway)")
	}
	g := &pushgateway{user: "eddy", password: fmt.Sprintf("pgw-%08x-Qz", rand.Uint32())}
	hash, err := bcrypt.GenerateFromPassword([]byte(g.password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	webCfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webCfg, []byte(fmt.Sprintf("basic_auth_users:\n  %s: %q\n", g.user, hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	g.addr = freeport.Addr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--web.listen-address="+g.addr, "--web.config.file="+webCfg, "--persistence.file=", "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("pushgateway log:\n%s", logs.String())
		}
	})
	eventually(t, 15*time.Second, func() string {
		resp, err := g.get("/-/ready")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("/-/ready: %s", resp.Status)
		}
		return ""
	})
	return g
}

func (g *pushgateway) get(path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+g.addr+path, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(g.user, g.password)
	return http.DefaultClient.Do(req)
}

// url is the push URL with the credentials in its userinfo.
func (g *pushgateway) url(password string) string {
	return fmt.Sprintf("http://%s:%s@%s", g.user, password, g.addr)
}

// value returns the value of the metric name (counter or gauge) the
// gateway holds with exactly the labels want (its own labels and the
// grouping labels); ok = false when there is none.
func (g *pushgateway) value(t *testing.T, name string, want map[string]string) (v float64, ok bool) {
	t.Helper()
	resp, err := g.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(want) {
			continue
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return metricValue(m), true
	}
	return 0, false
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return -1
}

// TestPushgateway runs bounded eddy run jobs that push to a real
// prometheus-pushgateway with basic auth: a job over 40 records pushes
// eddy_records_received_total 40 and eddy_job_succeeded 1 under the
// grouping key (job, eddy_job, instance), through $EDDY_PUSHGATEWAY and
// --pushgateway-job; a job whose sink fails pushes eddy_job_succeeded 0
// (through metrics.pushgateway in the spec) and still fails; a push that
// the gateway refuses (wrong password) is logged and leaves the job's
// success; bad URLs are refused with a clear error. No output contains a
// password.
func TestPushgateway(t *testing.T) {
	g := startPushgateway(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	const records = 40
	dir, specFile := replayedBroker(t, records)
	noPassword := func(what, out string) {
		t.Helper()
		if strings.Contains(out, g.password) || strings.Contains(out, "wrong-pw-7731") {
			t.Errorf("%s printed a password:\n%s", what, out)
		}
	}

	// A bounded job that succeeds: the URL from $EDDY_PUSHGATEWAY, the job
	// label from --pushgateway-job.
	t.Setenv(envPushgateway, g.url(g.password))
	out, err := runEddy("run", "--bounded", "--quiet", "--metrics-addr", "", "--pushgateway-job", "batch",
		"--job", specFile("pushok", "sink: \"sqlite:"+filepath.Join(dir, "ok.db")+"\"\n"))
	if err != nil || !strings.Contains(out, "pushed final metrics") {
		t.Fatalf("eddy run: %v\n%s", err, out)
	}
	noPassword("eddy run (push ok)", out)
	group := map[string]string{"job": "batch", "eddy_job": "pushok", "instance": host}
	if v, ok := g.value(t, "eddy_records_received_total", group); !ok || v != records {
		t.Errorf("eddy_records_received_total%v in the gateway = %v (found %v), want %d", group, v, ok, records)
	}
	if v, ok := g.value(t, "eddy_records_parsed_total", group); !ok || v != records {
		t.Errorf("eddy_records_parsed_total%v in the gateway = %v (found %v), want %d", group, v, ok, records)
	}
	if v, ok := g.value(t, "eddy_job_succeeded", group); !ok || v != 1 {
		t.Errorf("eddy_job_succeeded%v in the gateway = %v (found %v), want 1", group, v, ok)
	}
	if v, ok := g.value(t, "eddy_job_end_timestamp_seconds", group); !ok || time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("eddy_job_end_timestamp_seconds%v in the gateway = %v (found %v), want about now", group, v, ok)
	}
	t.Setenv(envPushgateway, "")

	// A job whose sink fails: it fails, and pushes eddy_job_succeeded 0
	// (URL from metrics.pushgateway of the spec).
	out, err = runEddy("run", "--bounded", "--quiet", "--metrics-addr", "", "--job",
		specFile("pushfail", fmt.Sprintf("sink: \"mysql:eddy:eddy@tcp(127.0.0.1:1)/eddy\"\nmetrics:\n  pushgateway: %q\n", g.url(g.password))))
	if err == nil || !strings.Contains(out, "pushed final metrics") {
		t.Fatalf("eddy run with a failing sink: err %v, want an error and a push\n%s", err, out)
	}
	noPassword("eddy run (failing sink)", out)
	group = map[string]string{"job": "eddy", "eddy_job": "pushfail", "instance": host}
	if v, ok := g.value(t, "eddy_job_succeeded", group); !ok || v != 0 {
		t.Errorf("eddy_job_succeeded%v in the gateway = %v (found %v), want 0", group, v, ok)
	}

	// The gateway refuses the push (wrong password): the job still
	// succeeds, the failure is logged without the password.
	out, err = runEddy("run", "--bounded", "--quiet", "--metrics-addr", "", "--pushgateway", g.url("wrong-pw-7731"),
		"--job", specFile("pushdenied", "sink: discard\n"))
	if err != nil || !strings.Contains(out, "final push failed") || !strings.Contains(out, "401") {
		t.Fatalf("eddy run with a refused push: err %v, want success and a logged 401\n%s", err, out)
	}
	noPassword("eddy run (push refused)", out)
	t.Logf("eddy run with a refused push:\n%s", out)
	if _, ok := g.value(t, "eddy_job_succeeded", map[string]string{"job": "eddy", "eddy_job": "pushdenied", "instance": host}); ok {
		t.Errorf("a refused push is in the gateway")
	}

	// An unbounded job with --pushgateway-interval: the gateway has its
	// counters while it runs; stopped, it pushes eddy_job_succeeded 1.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live := newRootCmd()
	var liveOut syncBuffer
	live.SetOut(&liveOut)
	live.SetErr(&liveOut)
	live.SetArgs([]string{"run", "--quiet", "--metrics-addr", "", "--pushgateway", g.url(g.password), "--pushgateway-interval", "1s",
		"--job", specFile("pushlive", "sink: discard\n")})
	done := make(chan error, 1)
	go func() { done <- live.ExecuteContext(ctx) }()
	group = map[string]string{"job": "eddy", "eddy_job": "pushlive", "instance": host}
	eventually(t, 20*time.Second, func() string {
		if v, ok := g.value(t, "eddy_records_received_total", group); !ok || v != records {
			return fmt.Sprintf("eddy_records_received_total%v = %v (found %v) while the job runs, want %d", group, v, ok, records)
		}
		return ""
	})
	if _, ok := g.value(t, "eddy_job_succeeded", group); ok {
		t.Errorf("eddy_job_succeeded pushed before the job ended")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("eddy run stopped: %v\n%s", err, liveOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("eddy run did not stop\n%s", liveOut.String())
	}
	if v, ok := g.value(t, "eddy_job_succeeded", group); !ok || v != 1 {
		t.Errorf("eddy_job_succeeded%v after the stop = %v (found %v), want 1\n%s", group, v, ok, liveOut.String())
	}
	noPassword("eddy run (periodic pushes)", liveOut.String())

	// Bad URLs and knobs.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--pushgateway", "ftp://h:21"}, "scheme must be http or https"},
		{[]string{"--pushgateway", "http://u:secret-pw-1@/x"}, "no host"},
		{[]string{"--pushgateway", "http://h:9091/?a=b"}, "no query"},
		{[]string{"--pushgateway", "http://h:9091", "--pushgateway-interval", "10ms"}, "at least 1s"},
		{[]string{"--pushgateway", "http://h:9091", "--pushgateway-job", ""}, "--pushgateway-job: must not be empty"},
	} {
		args := append([]string{"run", "--bounded", "--metrics-addr", "", "--job", specFile("pushbad", "sink: discard\n")}, c.args...)
		out, err := runEddy(args...)
		if err == nil || !strings.Contains(out, c.want) || strings.Contains(out, "secret-pw-1") {
			t.Errorf("eddy run %v: err %v, want an error with %q and no password\n%s", c.args, err, c.want, out)
		}
	}
	out, err = runEddy("run", "--bounded", "--metrics-addr", "", "--job",
		specFile("pushbadspec", "sink: discard\nmetrics:\n  pushgateway: 127.0.0.1:9091\n"))
	if err == nil || !strings.Contains(out, "metrics.pushgateway (line 6)") || !strings.Contains(out, "scheme must be http or https") {
		t.Errorf("a spec with a pushgateway without scheme: %v\n%s", err, out)
	}
	if _, _, err := loadJobSpec(specFile("pushcluster", "sink: discard\nmetrics:\n  pushgateway: http://127.0.0.1:9091\n"), false, spec.Cluster); err == nil ||
		!strings.Contains(err.Error(), "only eddy run pushes to a Pushgateway") {
		t.Errorf("a cluster spec with metrics.pushgateway: %v, want refused", err)
	}
}
