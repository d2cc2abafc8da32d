package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// clusterBinary is the eddy binary of the cluster mode, built once into
// dir (harness.Build) by the first run that needs it.
type clusterBinary struct {
	dir  string
	once sync.Once
	path string
	err  error
}

func (b *clusterBinary) get() (string, error) {
	b.once.Do(func() {
		start := time.Now()
		b.path, b.err = harness.Build(b.dir)
		if b.err == nil {
			fmt.Printf("  (built %s in %s)\n", b.path, time.Since(start).Round(time.Second))
		}
	})
	return b.path, b.err
}

// clusterJob is the job name of the cluster mode.
const clusterJob = "latency"

// clusterTarget is three eddy node processes (harness: Raft, gossip,
// virtual actors, one data dir each under dir) running the job, unbounded,
// submitted through the Raft API, into a fresh MySQL database; checkpoints
// every --checkpoint-interval to file:// storage under dir.
type clusterTarget struct {
	bin        *clusterBinary
	brokers    []string
	partitions int
	dir        string

	drop    func()
	poll    *sql.DB
	c       *harness.Cluster
	stopObs context.CancelFunc
	obsDone chan struct{}
}

func (t *clusterTarget) start(ctx context.Context, topic string) error {
	bin, err := t.bin.get()
	if err != nil {
		return err
	}
	dsn, drop, err := freshMySQL(ctx, topic)
	if err != nil {
		return err
	}
	t.drop = drop
	if t.poll, err = sql.Open("mysql", dsn); err != nil {
		return err
	}
	if err := os.MkdirAll(t.dir, 0o755); err != nil {
		return err
	}
	if t.c, err = harness.New(harness.Options{Binary: bin, Dir: t.dir, Nodes: 3, BootstrapExpect: 3}); err != nil {
		return err
	}
	if err := t.c.StartAll(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, _, err := t.c.WaitLeader(wctx); err != nil {
		return t.failed(err)
	}
	cfg := mysqlSinkConfig()
	flush := ""
	if latFlush > 0 {
		flush = fmt.Sprintf("  flush_interval: %s\n", latFlush)
	}
	flush += fmt.Sprintf("  flush_on_idle: %t\n", flushOnIdle)
	spec := fmt.Sprintf(`name: %s
source:
  brokers: [%q]
  topic: %s
batch_linger: %s
sink: %q
sink_options:
  batch_rows: %d
  batch_bytes: %d
  conns: %d
%scheckpoint:
  storage: %q
  interval: %s
`, clusterJob, t.brokers[0], topic, batchLinger, "mysql:"+dsn, cfg.BatchRows, cfg.BatchBytes, cfg.Conns, flush,
		"file://"+filepath.Join(t.dir, "checkpoints"), ckptInterval)
	if _, err := t.c.Client(0, 30*time.Second).SubmitJob(ctx, clusterJob, []byte(spec), int32(t.partitions)); err != nil {
		return t.failed(fmt.Errorf("submit job: %w", err))
	}
	obs := harness.NewObserver(t.c, int32(t.partitions))
	var octx context.Context
	octx, t.stopObs = context.WithCancel(ctx)
	t.obsDone = make(chan struct{})
	go func() { defer close(t.obsDone); obs.Run(octx) }()
	start := time.Now()
	for deadline := start.Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		err := obs.AllRunning("")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return t.failed(fmt.Errorf("partitions not all running after a minute: %w", err))
		}
	}
	fmt.Printf("  (3 nodes up, job %s submitted, all %d partitions running after %s)\n", clusterJob, t.partitions, time.Since(start).Round(time.Millisecond))
	return nil
}

// failed returns err with the tail of every node's log.
func (t *clusterTarget) failed(err error) error {
	for _, n := range t.c.Nodes {
		err = fmt.Errorf("%w\n---- %s log tail:\n%s", err, n.ID, n.LogTail(20))
	}
	return err
}

func (t *clusterTarget) watch(ctx context.Context, ps *probes) { pollMySQL(ctx, t.poll, ps) }

func (t *clusterTarget) close() {
	if t.stopObs != nil {
		t.stopObs()
		<-t.obsDone
	}
	if t.c != nil {
		t.c.Close()
	}
	if t.poll != nil {
		t.poll.Close()
	}
	if t.drop != nil {
		t.drop()
	}
}
