package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/devbroker"
)

func TestReplayCommand(t *testing.T) {
	b, err := devbroker.Start(devbroker.Config{Partitions: 3, Topics: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	path := filepath.Join(t.TempDir(), "in.csv")
	data := "id;ts;v\n1;2019-03-01T00:00:00;5\n2;2019-03-01T00:00:01\n3;2019-03-01T00:00:02;7\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := newReplayCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"--brokers", strings.Join(b.Addrs(), ","), "--topic", "t", "--data", path,
		"--delimiter", ";", "--map", "pboxid=id,event_time=ts,metric=v"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("replay: %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
	if !regexp.MustCompile(`3 rows read, 2 produced in .*, 1 bad rows skipped\n  line 3: .*wrong number of columns`).MatchString(out.String()) {
		t.Errorf("summary:\n%s", &out)
	}
	// stderr is not a terminal: progress as lines.
	if !strings.Contains(errOut.String(), "replay: 3 rows, 2 produced") {
		t.Errorf("progress lines:\n%s", &errOut)
	}
	if got := b.Partitions("t"); got != 3 {
		t.Fatalf("topic t has %d partitions", got)
	}

	// Bad flags fail before connecting.
	for _, args := range [][]string{
		{"--brokers", " , "},
		{"--delimiter", "ab"},
		{"--map", "device=id"},
		{"--data", filepath.Join(t.TempDir(), "missing.csv")},
	} {
		cmd := newReplayCmd()
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err == nil {
			t.Errorf("eddy replay %v: no error", args)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDevBrokerCommand runs `eddy dev broker` on a free port, replays into
// it, and stops it through its context.
func TestDevBrokerCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newDevBrokerCmd()
	var out syncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--listen", "127.0.0.1:0", "--partitions", "4", "--topic", "a", "--topic", "b"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	addr := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(10 * time.Second)
	for !addr.MatchString(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no address printed:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "a (4 partitions), b (4 partitions)") {
		t.Errorf("banner:\n%s", out.String())
	}
	broker := addr.FindStringSubmatch(out.String())[1]

	rc := newReplayCmd()
	var rout bytes.Buffer
	rc.SetOut(&rout)
	rc.SetErr(&rout)
	rc.SetArgs([]string{"--brokers", broker, "--topic", "a", "--limit", "1000", "--quiet"})
	if err := rc.Execute(); err != nil {
		t.Fatalf("replay into eddy dev broker: %v\n%s", err, &rout)
	}
	if !strings.Contains(rout.String(), "1000 produced") {
		t.Errorf("replay output:\n%s", &rout)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("broker command: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("broker did not stop")
	}
}
