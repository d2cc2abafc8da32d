package control

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHandlerServesUIAndKeepsJSONErrors: GET / and /ui/... are the web UI,
// unknown /v1/ paths stay JSON 404/405, and /v1/leases/history?limit=N
// answers the newest N events.
func TestHandlerServesUIAndKeepsJSONErrors(t *testing.T) {
	n := startNode(t, testNodeConfig(t, "n1", 1, nil))
	eventually(t, 15*time.Second, func() error {
		if !n.IsLeader() {
			return errors.New("not leader yet")
		}
		return nil
	})
	base := "http://" + n.cfg.HTTPAddr
	do := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := do("GET", "/"); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "/ui/app.js") {
		t.Errorf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := do("GET", "/ui/app.js"); resp.StatusCode != 200 {
		t.Errorf("GET /ui/app.js: %d", resp.StatusCode)
	}
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/nope", 404, CodeNotFound},
		{"GET", "/nope", 404, CodeNotFound},
		{"POST", "/", 405, CodeMethod},
		{"DELETE", "/v1/cluster/members", 405, CodeMethod},
		{"GET", "/v1/leases/history?limit=x", 400, CodeInvalid},
	} {
		resp, body := do(c.method, c.path)
		var eb ErrorBody
		if resp.StatusCode != c.status || json.Unmarshal([]byte(body), &eb) != nil || eb.Code != c.code {
			t.Errorf("%s %s: %d %s, want %d with code %s", c.method, c.path, resp.StatusCode, body, c.status, c.code)
		}
	}

	ctx := t.Context()
	for p := int32(0); p < 3; p++ {
		if _, err := n.Apply(ctx, LeaseAcquire{Job: "j", Partition: p, Owner: "n1"}); err != nil {
			t.Fatal(err)
		}
	}
	var hist []LeaseEvent
	resp, body := do("GET", "/v1/leases/history?limit=2")
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &hist) != nil || len(hist) != 2 || hist[0].Partition != 1 || hist[1].Partition != 2 {
		t.Errorf("history?limit=2: %d %s, want the events of partitions 1 and 2", resp.StatusCode, body)
	}
}
