package security

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control/client"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// call sends one request with the bearer token tok ("" = none) and returns
// the status and body.
func call(t *testing.T, method, url, tok, body string) (int, string) {
	t.Helper()
	code, b, err := try(method, url, tok, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, b
}

func try(method, url, tok, body string) (int, string, error) {
	r, _ := http.NewRequest(method, url, strings.NewReader(body))
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(r)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestNoTokenConfigured: a node started without any API token refuses
// every write — cancel, job submit, config put, cluster changes — with
// 401 and a message that says how to configure one, whatever token the
// request carries; reads still work. The nodes' own forwarding to the
// leader (node lease renewals of the followers) still works: a tokenless
// three-node cluster keeps running.
func TestNoTokenConfigured(t *testing.T) {
	c := harness.Start(t, harness.Options{Binary: binary, Dir: t.TempDir(), Nodes: 3, BootstrapExpect: 3, NoToken: true})
	n := c.Nodes[0]
	began := time.Now()
	for _, tok := range []string{"", harness.DefaultToken, "anything"} {
		for _, req := range []struct{ method, path, body string }{
			{http.MethodPost, "/v1/jobs/iot-work/cancel", ""},
			{http.MethodPut, "/v1/jobs/iot-work", "name: iot-work\nsink: discard\n"},
			{http.MethodDelete, "/v1/jobs/iot-work", ""},
			{http.MethodPut, "/v1/config/devices/1", `{"company":"c","site":"s"}`},
			{http.MethodPost, "/v1/cluster/leave", ""},
		} {
			code, body := call(t, req.method, n.URL()+req.path, tok, req.body)
			if code != http.StatusUnauthorized || !strings.Contains(body, "--api-token-file") {
				t.Errorf("%s %s with token %q: HTTP %d %s, want 401 saying how to configure a token", req.method, req.path, tok, code, body)
			}
		}
	}
	if code, body := call(t, http.MethodGet, n.URL()+"/v1/jobs", "", ""); code != http.StatusOK {
		t.Errorf("GET /v1/jobs: HTTP %d %s", code, body)
	}
	out, err := exec.Command(binary, "ctl", "--addr", n.URL(), "job", "cancel", "iot-work").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--api-token-file") {
		t.Errorf("eddy ctl job cancel on a node without token: %v\n%s", err, out)
	}
	// Followers renew their node leases through the leader (POST
	// /v1/internal/apply) every second or so.
	time.Sleep(time.Until(began.Add(6 * time.Second)))
	for _, n := range c.Nodes {
		b, err := os.ReadFile(n.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "lease renewal failed") {
			t.Errorf("%s: node-to-node forwarding refused on a cluster without token:\n%s", n.ID, n.LogTail(10))
		}
	}
}

// TestCancelAndSASLPassword runs a node with an API token and a job whose
// spec holds a literal SASL password: cancel without the token (or with a
// wrong one) is 401, with it 200; GET /v1/jobs/{name}, GET /v1/jobs and
// the PUT answer show the spec with the password masked and a ${VAR}
// reference as written; no node log contains the password.
func TestCancelAndSASLPassword(t *testing.T) {
	dir := t.TempDir()
	broker := harness.StartBroker(t, binary, dir, 2)
	envPW := fmt.Sprintf("env-pw-%08x-Zq", rand.Uint32())
	t.Setenv("KAFKA_PASSWORD", envPW) // the node expands ${KAFKA_PASSWORD}
	c := harness.Start(t, harness.Options{Binary: binary, Dir: dir, Nodes: 1, BootstrapExpect: 1, Args: []string{"--log-level", "debug"}})
	n := c.Nodes[0]
	pw := fmt.Sprintf("sasl-pw-%08x-Zq", rand.Uint32())
	t.Logf("password %s", pw)
	spec := fmt.Sprintf("name: sasl-job\nsource:\n  brokers: [%q]\n  sasl:\n    mechanism: SCRAM-SHA-256\n    user: eddy\n    password: %s   # literal\nsink: discard\n", broker, pw)
	envSpec := fmt.Sprintf("name: env-job\nsource:\n  brokers: [%q]\n  sasl:\n    mechanism: PLAIN\n    user: eddy\n    password: \"${KAFKA_PASSWORD}\"\nsink: discard\n", broker)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, body := call(t, http.MethodPut, n.URL()+"/v1/jobs/sasl-job?partitions=2", "", spec)
	if code != http.StatusUnauthorized {
		t.Fatalf("submit without token: HTTP %d %s", code, body)
	}
	code, body = call(t, http.MethodPut, n.URL()+"/v1/jobs/sasl-job?partitions=2", c.Token(), spec)
	if code != http.StatusOK || strings.Contains(body, pw) || !strings.Contains(body, "xxxxx") {
		t.Fatalf("submit with token: HTTP %d %s", code, body)
	}
	if _, err := n.Client(10*time.Second).SubmitJob(ctx, "env-job", []byte(envSpec), 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the job starts, fails to authenticate, is retried and logged
	for _, path := range []string{"/v1/jobs/sasl-job", "/v1/jobs"} {
		code, body := call(t, http.MethodGet, n.URL()+path, "", "")
		if code != http.StatusOK || strings.Contains(body, pw) || !strings.Contains(body, `password: xxxxx   # literal`) {
			t.Errorf("GET %s: HTTP %d, password not masked in place:\n%s", path, code, body)
		}
		if path == "/v1/jobs" && !strings.Contains(body, `password: \"${KAFKA_PASSWORD}\"`) {
			t.Errorf("GET %s: the ${KAFKA_PASSWORD} reference is not kept:\n%s", path, body)
		}
	}
	out, err := exec.Command(binary, "ctl", "--addr", n.URL(), "job", "get", "sasl-job", "-o", "json").CombinedOutput()
	if err != nil || bytes.Contains(out, []byte(pw)) {
		t.Errorf("eddy ctl job get: %v\n%s", err, out)
	}

	for _, tok := range []string{"", "wrong-token"} {
		if code, body := call(t, http.MethodPost, n.URL()+"/v1/jobs/sasl-job/cancel", tok, ""); code != http.StatusUnauthorized {
			t.Errorf("cancel with token %q: HTTP %d %s, want 401", tok, code, body)
		}
	}
	if code, body := call(t, http.MethodPost, n.URL()+"/v1/jobs/sasl-job/cancel", c.Token(), ""); code != http.StatusOK {
		t.Errorf("cancel with the token: HTTP %d %s, want 200", code, body)
	}
	anon, _ := client.New(client.Config{Addrs: []string{n.URL()}, RetryTimeout: 5 * time.Second})
	if err := anon.CancelJob(ctx, "env-job"); err == nil {
		t.Errorf("client without token cancelled env-job")
	}
	time.Sleep(time.Second)
	log, err := os.ReadFile(n.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{pw, envPW} {
		if bytes.Contains(log, []byte(p)) {
			t.Errorf("node log contains the SASL password %s", p)
		}
	}
	if !bytes.Contains(log, []byte("sasl-job")) {
		t.Errorf("node log does not mention the job at all (was it run?):\n%s", log)
	}
}

// TestSavepointAPIToken: eddy run's savepoint API (POST /v1/savepoints on
// --metrics-addr) refuses requests with 401 when eddy run has no token
// (the message says how to set one) and without the right token when it
// has one; eddy savepoint --token-file takes a savepoint.
func TestSavepointAPIToken(t *testing.T) {
	dir := t.TempDir()
	broker := harness.StartBroker(t, binary, dir, 2)
	tokenFile := writeFile(t, dir, "run-token", "run-token-"+fmt.Sprint(rand.Uint32()))
	runJob := func(name string, args ...string) string {
		t.Helper()
		addr := harness.FreeAddr(t)
		spec := writeFile(t, dir, name+".yaml", fmt.Sprintf("name: %s\nsource:\n  brokers: [%q]\ncheckpoint:\n  storage: %q\n  interval: 1s\nstate:\n  dir: %q\nsink: discard\n",
			name, broker, "file://"+filepath.Join(dir, name, "cp"), filepath.Join(dir, name, "state")))
		cmd := exec.Command(binary, append([]string{"run", "--job", spec, "--quiet", "--metrics-addr", addr}, args...)...)
		cmd.Env = append(os.Environ(), "EDDY_TOKEN=", "EDDY_API_TOKEN=")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("eddy run %s:\n%s", name, out.String())
			}
		})
		harness.Eventually(t, 30*time.Second, func() error {
			if code, _, err := try(http.MethodGet, "http://"+addr+"/v1/checkpoints", "", ""); err != nil || code != http.StatusOK {
				return fmt.Errorf("HTTP %d: %v", code, err)
			}
			return nil
		})
		return addr
	}

	open := runJob("no-token")
	code, body := call(t, http.MethodPost, "http://"+open+"/v1/savepoints", "", "")
	if code != http.StatusUnauthorized || !strings.Contains(body, "--api-token-file") {
		t.Errorf("savepoint of a job without token: HTTP %d %s, want 401 saying how to set one", code, body)
	}
	if code, body := call(t, http.MethodDelete, "http://"+open+"/v1/savepoints/1", "x", ""); code != http.StatusUnauthorized {
		t.Errorf("delete savepoint of a job without token: HTTP %d %s", code, body)
	}

	guarded := runJob("with-token", "--api-token-file", tokenFile)
	sp := exec.Command(binary, "savepoint", "--addr", guarded, "--timeout", "20s")
	sp.Env = append(os.Environ(), "EDDY_TOKEN=", "EDDY_API_TOKEN=")
	if out, err := sp.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Errorf("eddy savepoint without token: %v\n%s", err, out)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		out, err := exec.Command(binary, "savepoint", "--addr", guarded, "--token-file", tokenFile, "--timeout", "20s").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "complete") {
			return fmt.Errorf("eddy savepoint --token-file: %v\n%s", err, out)
		}
		return nil
	})
}
