// Package ui tests eddy's web UI in a real headless Chromium (chromedp)
// against real processes: a broker (eddy dev broker), three `eddy node`
// processes with an API token and a job over a continuous replay. The page
// is loaded from one node; the test asserts that the partitions and their
// owners appear in the DOM as the API reports them, SIGKILLs the owner of
// some partitions and waits until the page shows live owners for all of
// them (and the dead node as failed), saves a full-page screenshot, and
// cancels the job from the page: refused without the token, done with it.
//
//	go test ./tests/ui -v                      # screenshot in $EDDY_ARTIFACTS_DIR or a temp dir
//	go test ./tests/ui -v -update-screenshot   # also writes docs/ui.png
//
// Without a Chromium binary (chromium, chromium-browser, google-chrome) the
// test skips; with CI=true it fails (.ci/run installs the Debian package).
package ui

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/eddy-iot/eddy/control/client"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

var (
	updateScreenshot = flag.Bool("update-screenshot", false, "write the screenshot to docs/ui.png")
	eddyBin          string
)

const (
	job        = "ui-job"
	partitions = 6
	// recovery bounds the time from the SIGKILL until the page shows a
	// live owner for every orphaned partition (lease TTL + safety + the
	// takeover + a poll, on a loaded 2-core machine).
	recovery = 90 * time.Second
)

func TestMain(m *testing.M) { harness.Main(m, &eddyBin) }

func inCI() bool { v := os.Getenv("CI"); return v == "true" || v == "1" }

func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if inCI() {
		t.Fatal("no chromium binary on PATH (CI=true: the UI test must run; .ci/run installs the Debian package chromium)")
	}
	t.Skip("no chromium binary on PATH (apt-get install chromium)")
	return ""
}

// row is a partition row of the page.
type row struct {
	Partition string `json:"partition"`
	Owner     string `json:"owner"`
	State     string `json:"state"`
}

const rowsJS = `[...document.querySelectorAll('#partitions tr[data-partition]')].map(r => ({partition: r.dataset.partition, owner: r.dataset.owner, state: r.dataset.state}))`

const membersJS = `Object.fromEntries([...document.querySelectorAll('#members tr[data-member]')].map(r => [r.dataset.member, r.dataset.status]))`

func TestWebUI(t *testing.T) {
	exe := chromium(t)
	began := time.Now()
	dir := t.TempDir()
	broker := harness.StartBroker(t, eddyBin, dir, partitions)

	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	c := harness.Start(t, harness.Options{Binary: eddyBin, Dir: dir, Nodes: 3, BootstrapExpect: 3,
		Args: []string{"--api-token-file", tokenFile}, Logf: t.Logf})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cl, err := client.New(client.Config{Addrs: c.URLs(0), Token: token, RetryTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("name: %s\nsource:\n  brokers: [%q]\nsink: discard\ncheckpoint:\n  storage: %q\n  interval: 1s\n",
		job, broker, "file://"+filepath.Join(dir, "checkpoints"))
	if _, err := cl.SubmitJob(ctx, job, []byte(spec), partitions); err != nil {
		t.Fatal(err)
	}
	harness.StartReplay(t, eddyBin, broker, "--limit", "100000", "--speed", "5000")

	// The browser.
	actx, acancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1400, 1000))...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	var mu sync.Mutex
	var pageErrors []string
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// Network errors of the polls are expected once a node is
			// killed; an exception or a CSP violation is a bug.
			if m.IsException() || m.Source == "security" || m.Source == "javascript" || m.Type == chromedp.ConsoleError && m.Source == "" {
				mu.Lock()
				pageErrors = append(pageErrors, m.String())
				mu.Unlock()
			}
		}
	}()
	page := c.Nodes[0]
	if err := chromedp.Do(bctx, chromedp.Navigate(page.URL()+"/")); err != nil {
		t.Fatal(err)
	}
	t.Logf("page loaded from %s after %s", page.URL(), time.Since(began).Round(time.Millisecond))
	domRows := func() ([]row, error) { return chromedp.Run(bctx, chromedp.Evaluate[[]row](rowsJS)) }

	// Every partition appears, running, with the owner the API reports.
	harness.Eventually(t, 90*time.Second, func() error {
		rows, err := domRows()
		if err != nil {
			return err
		}
		api, err := cl.Partitions(ctx, job)
		if err != nil {
			return err
		}
		want := map[string]string{}
		for _, p := range api {
			want[fmt.Sprintf("%s/%d", p.Job, p.Partition)] = p.Owner
		}
		if len(rows) != partitions {
			return fmt.Errorf("page shows %d partition rows, want %d", len(rows), partitions)
		}
		for _, r := range rows {
			if r.State != "running" || r.Owner == "" || want[r.Partition] != r.Owner {
				return fmt.Errorf("page row %+v, API owner %q", r, want[r.Partition])
			}
		}
		return nil
	})
	rows, _ := domRows()
	t.Logf("page shows %d running partitions with the API's owners after %s: %v", len(rows), time.Since(began).Round(time.Millisecond), rows)
	if members, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]string](membersJS)); err != nil || len(members) != 3 {
		t.Errorf("members on the page: %v (%v), want 3", members, err)
	}

	// SIGKILL the owner of some partitions (not the page's node).
	var victim string
	var orphans []string
	for _, r := range rows {
		if r.Owner != page.ID && (victim == "" || r.Owner == victim) {
			victim = r.Owner
			orphans = append(orphans, r.Partition)
		}
	}
	if victim == "" {
		t.Fatalf("%s owns every partition: %v", page.ID, rows)
	}
	killed := time.Now()
	if err := c.Node(victim).Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL %s, owner of %v", victim, orphans)
	live := func(id string) bool { n := c.Node(id); return n != nil && n.Running() }
	harness.Eventually(t, recovery, func() error {
		rows, err := domRows()
		if err != nil {
			return err
		}
		for _, r := range rows {
			if !live(r.Owner) || r.State != "running" {
				return fmt.Errorf("partition %s shows owner %q (live %v), state %s", r.Partition, r.Owner, live(r.Owner), r.State)
			}
		}
		return nil
	})
	rows, _ = domRows()
	t.Logf("page shows live owners for every partition %s after the SIGKILL: %v", time.Since(killed).Round(time.Millisecond), rows)
	harness.Eventually(t, recovery, func() error {
		m, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]string](membersJS))
		if err != nil {
			return err
		}
		if m[victim] != "failed" {
			return fmt.Errorf("page shows %s as %q, want failed", victim, m[victim])
		}
		return nil
	})
	kinds, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#lease-history tr[data-kind]')].map(r => r.dataset.kind)`))
	if err != nil || !slices.Contains(kinds, "takeover") {
		t.Errorf("lease history on the page: %v (%v), want a takeover", kinds, err)
	}
	// A complete checkpoint with its duration and size.
	harness.Eventually(t, 60*time.Second, func() error {
		got, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#checkpoints tr[data-state="complete"]')].map(r => r.cells[5].textContent + ' | ' + r.cells[6].textContent)`))
		if err != nil {
			return err
		}
		for _, s := range got {
			if !strings.Contains(s, "–") {
				return nil
			}
		}
		return fmt.Errorf("no complete checkpoint with a duration and a size on the page: %v", got)
	})
	// A savepoint taken through the API shows as one.
	sp, err := cl.Savepoint(ctx, job, client.SavepointOptions{})
	if err != nil {
		t.Fatalf("savepoint: %v", err)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		kind, err := chromedp.Run(bctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector('#checkpoints tr[data-checkpoint="%s/%d"]') || {dataset: {}}).dataset.kind || ''`, job, sp.ID)))
		if err != nil {
			return err
		}
		if kind != "savepoint" {
			return fmt.Errorf("savepoint %d shows as %q on the page", sp.ID, kind)
		}
		return nil
	})
	t.Logf("savepoint %d shown as a savepoint", sp.ID)
	screenshot(t, bctx)

	// Cancel from the page: without the token the API refuses it.
	btn := `#jobs button[data-action="cancel"][data-job="` + job + `"]`
	clickTwice := func() {
		t.Helper()
		if err := chromedp.Do(bctx,
			chromedp.Poll[chromedp.Void](`document.querySelector('`+btn+`:not([disabled]):not(.armed)') !== null`, chromedp.WithPollingTimeout(10*time.Second)),
			chromedp.Click(chromedp.CSS(btn)),
			chromedp.Poll[chromedp.Void](`document.querySelector('`+btn+`.armed') !== null`, chromedp.WithPollingTimeout(10*time.Second)),
			chromedp.Click(chromedp.CSS(btn))); err != nil {
			t.Fatal(err)
		}
	}
	clickTwice()
	result := func(want string) string {
		t.Helper()
		var text string
		harness.Eventually(t, 30*time.Second, func() error {
			r, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[document.getElementById('action').dataset.result || '', document.getElementById('action').textContent]`))
			if err != nil {
				return err
			}
			if r[0] != want {
				return fmt.Errorf("action result %q (%s), want %s", r[0], r[1], want)
			}
			text = r[1]
			return nil
		})
		return text
	}
	text := result("error")
	t.Logf("cancel without token: %s", text)
	if !strings.Contains(text, "unauthorized") && !strings.Contains(text, "token") {
		t.Errorf("cancel without the token: %q, want the API's unauthorized error", text)
	}
	if info, err := cl.JobInfo(ctx, job); err != nil || info.State == "cancelled" {
		t.Fatalf("job after an unauthorized cancel: %+v %v", info.State, err)
	}
	// With the token (typed into the page, kept in sessionStorage) it is cancelled.
	if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.ID("token"), token)); err != nil {
		t.Fatal(err)
	}
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.getElementById('token').value.length`)); err != nil || n != len(token) {
		t.Fatalf("token field holds %d characters after typing (%v), want %d", n, err, len(token))
	}
	clickTwice()
	result("ok")
	harness.Eventually(t, 30*time.Second, func() error {
		info, err := cl.JobInfo(ctx, job)
		if err != nil {
			return err
		}
		state, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('#jobs tr[data-job="`+job+`"]').dataset.state`))
		if err != nil {
			return err
		}
		if info.State != "cancelled" || state != "cancelled" {
			return fmt.Errorf("job state %q, page shows %q, want cancelled", info.State, state)
		}
		return nil
	})
	stored, err := chromedp.Run(bctx, chromedp.Evaluate[string](`sessionStorage.getItem('eddy.token') || ''`))
	if err != nil || stored != token {
		t.Errorf("token in sessionStorage: %v (%d chars), want the typed token", err, len(stored))
	}
	if body, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`)); err != nil || strings.Contains(body, token) {
		t.Errorf("the page shows the token as text (or %v)", err)
	}
	t.Logf("job cancelled from the page; test done in %s", time.Since(began).Round(time.Second))

	mu.Lock()
	defer mu.Unlock()
	for _, e := range pageErrors {
		t.Errorf("browser console: %s", e)
	}
}

// screenshot saves a full-page PNG into $EDDY_ARTIFACTS_DIR (else a
// temporary directory), and into docs/ui.png with -update-screenshot.
func screenshot(t *testing.T, ctx context.Context) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("EDDY_ARTIFACTS_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ui.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot (%d bytes): %s", len(png), path)
	if *updateScreenshot {
		docs := filepath.Join("..", "..", "docs", "ui.png")
		if err := errors.Join(os.MkdirAll(filepath.Dir(docs), 0o755), os.WriteFile(docs, png, 0o644)); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", docs)
	}
}
