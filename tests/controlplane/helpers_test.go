package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/control/client"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

func withForwarded(h map[string]string) map[string]string {
	out := map[string]string{control.ForwardedHeader: "test"}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// badRequest is one row of TestBadRequests.
type badRequest struct {
	name       string
	method     string
	path       string
	body       string
	header     map[string]string
	wantStatus int
}

func (b badRequest) check(t *testing.T, n *harness.Node) {
	t.Helper()
	req, err := http.NewRequest(b.method, n.URL()+b.path, strings.NewReader(b.body))
	if err != nil {
		t.Fatalf("%s: %v", b.name, err)
	}
	for k, v := range b.header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}).Do(req)
	if err != nil {
		t.Errorf("%s via %s: %v", b.name, n.ID, err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != b.wantStatus {
		t.Errorf("%s via %s: %s %s → HTTP %d %s, want %d", b.name, n.ID, b.method, b.path, resp.StatusCode, body, b.wantStatus)
		return
	}
	var eb control.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error == "" || eb.Code == "" {
		t.Errorf("%s via %s: body %q is not a JSON error with a message and a code", b.name, n.ID, body)
	}
}

// clusterState is what a bad request must not change.
type clusterState struct {
	entries   string // consistent listing of every key with revisions
	term      uint64
	lastIndex uint64
}

func snapshotState(t *testing.T, c *harness.Cluster) clusterState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, st, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Client(0, 10*time.Second).List(ctx, "", client.ReadOptions{Consistent: true})
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, e := range l.Entries {
		fmt.Fprintf(&sb, "%s@%d=%q ", e.Key, e.ModifyIndex, e.Value)
	}
	return clusterState{entries: sb.String(), term: st.Term, lastIndex: st.LastIndex}
}
