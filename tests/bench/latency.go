package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/dataset"
	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// The --latency-* flags.
var (
	latRate      float64
	latDuration  time.Duration
	latEvery     int
	latModes     string        // comma-separated run, cluster, kafka
	latRuns      int           // runs of each mode (and interval); medians are printed
	latIntervals string        // kafka mode: comma-separated checkpoint intervals
	latFlush     time.Duration // actors.Config.SinkFlushInterval of the run and cluster modes; 0 = default
)

// The latency modes (--latency-mode).
const (
	modeRun     = "run"     // the job in this process, like eddy run, into MySQL
	modeCluster = "cluster" // three eddy node processes, the job submitted through the Raft API, into MySQL
	modeKafka   = "kafka"   // the job in this process into the transactional Kafka sink, read read_committed
)

// probe is a produced record whose arrival in the sink is awaited: its
// key there, and when it was handed to the producer.
type probe struct {
	partition int32
	offset    int64
	eventTime string // as the MySQL sink stores it
	sent      time.Time
}

// probes are the acked probes not yet seen in the sink and the latencies
// of those seen.
type probes struct {
	mu      sync.Mutex
	waiting []probe
	lat     []float64 // ms
	warm    time.Time // probes sent before it are not counted
}

// acked adds a probe the broker acknowledged.
func (ps *probes) acked(p probe) {
	ps.mu.Lock()
	ps.waiting = append(ps.waiting, p)
	ps.mu.Unlock()
}

// pending returns up to n waiting probes, oldest first.
func (ps *probes) pending(n int) []probe {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return slices.Clone(ps.waiting[:min(len(ps.waiting), n)])
}

// seen removes the waiting probes whose (partition, offset) is in keys,
// visible at now, and records their latencies.
func (ps *probes) seen(keys map[[2]int64]bool, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	kept := ps.waiting[:0]
	for _, p := range ps.waiting {
		if !keys[[2]int64{int64(p.partition), p.offset}] {
			kept = append(kept, p)
			continue
		}
		if p.sent.After(ps.warm) {
			ps.lat = append(ps.lat, float64(now.Sub(p.sent).Microseconds())/1000)
		}
	}
	ps.waiting = kept
}

// left returns how many acked probes were not seen yet.
func (ps *probes) left() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.waiting)
}

// latencyTarget is the job a latency run measures, and how its output is
// watched.
type latencyTarget interface {
	// start starts the job on topic (empty, 12 partitions) and returns
	// once it reads.
	start(ctx context.Context, topic string) error
	// watch reports the probes that became visible in the sink to ps
	// until ctx ends.
	watch(ctx context.Context, ps *probes)
	// close stops the job and frees what start made.
	close()
}

// latencyResult is one latency run.
type latencyResult struct {
	sent    int
	elapsed time.Duration
	lat     []float64 // ms, the probes seen after the warm-up
	left    int       // probes not visible within 10 s of the end
	load    string    // /proc/loadavg at the start
	explain string    // the job's own histograms, if the target has them
}

// latencySetting is one line of the latency table: a mode, with its
// checkpoint interval for the Kafka sink.
type latencySetting struct {
	name   string
	target func(run int) latencyTarget
}

// runLatency runs every --latency-mode --latency-runs times, at rate
// records/s for --latency-duration each, and prints each run and the
// medians of each mode's percentiles. maxRate is the mysql variant's
// median of this run (0: not measured), printed beside rate.
func runLatency(ctx context.Context, brokers []string, data, tmp string, partitions int, rate, maxRate float64) error {
	if latRuns < 1 || latEvery < 1 || latDuration <= 0 {
		return fmt.Errorf("--latency-runs and --probe-every must be >= 1 and --latency-duration > 0 (got %d, %d, %s)", latRuns, latEvery, latDuration)
	}
	var settings []latencySetting
	var cluster *clusterBinary
	for _, m := range splitComma(latModes) {
		switch m {
		case modeRun:
			settings = append(settings, latencySetting{"eddy run → mysql", func(int) latencyTarget {
				return &runTarget{brokers: brokers}
			}})
		case modeCluster:
			if cluster == nil {
				cluster = &clusterBinary{dir: tmp}
			}
			settings = append(settings, latencySetting{"3 eddy nodes → mysql", func(run int) latencyTarget {
				return &clusterTarget{bin: cluster, brokers: brokers, partitions: partitions,
					dir: filepath.Join(tmp, fmt.Sprintf("cluster-%d", run))}
			}})
		case modeKafka:
			for _, s := range splitComma(latIntervals) {
				iv, err := time.ParseDuration(s)
				if err != nil || iv <= 0 {
					return fmt.Errorf("--latency-intervals: %q is not a positive duration (e.g. 1s)", s)
				}
				settings = append(settings, latencySetting{fmt.Sprintf("eddy run → kafka, ckpt %s", iv), func(run int) latencyTarget {
					return &kafkaTarget{brokers: brokers, partitions: partitions, interval: iv, dir: filepath.Join(tmp, fmt.Sprintf("kafka-%s-%d", iv, run))}
				}})
			}
		default:
			return fmt.Errorf("--latency-mode: unknown mode %q; want run, cluster or kafka (comma-separated)", m)
		}
	}
	vs := "no mysql variant in this run"
	if maxRate > 0 {
		vs = fmt.Sprintf("%.2f × the mysql variant's median %.0f/s of this run", rate/maxRate, maxRate)
	}
	fmt.Printf("\nlatency: produce → row visible in the sink, steady %.0f records/s (%s) for %s, 1 probe per %d records, 1 s warm-up, %d runs each\n",
		rate, vs, latDuration, latEvery, latRuns)
	type line struct {
		name            string
		p50, p99, p999  []float64
		max             []float64
		left, probesOut []int
	}
	var lines []line
	topic := 0
	for _, s := range settings {
		l := line{name: s.name}
		for i := 0; i < latRuns; i++ {
			topic++
			res, err := latencyRun(ctx, brokers, data, fmt.Sprintf("iot-latency-%d", topic), partitions, rate, s.target(topic))
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			fmt.Printf("  %-28s run %d: %d records in %s (%.0f/s), %d probes, %d not visible within 10 s; p50 %.1f ms  p99 %.1f ms  p99.9 %.1f ms  max %.1f ms  (load %s)\n",
				s.name, i+1, res.sent, res.elapsed.Round(time.Millisecond), float64(res.sent)/res.elapsed.Seconds(),
				len(res.lat), res.left, pct(res.lat, 50), pct(res.lat, 99), pct(res.lat, 99.9), pct(res.lat, 100), res.load)
			if res.explain != "" {
				fmt.Printf("  %-28s        %s\n", "", res.explain)
			}
			l.p50 = append(l.p50, pct(res.lat, 50))
			l.p99 = append(l.p99, pct(res.lat, 99))
			l.p999 = append(l.p999, pct(res.lat, 99.9))
			l.max = append(l.max, pct(res.lat, 100))
			l.left = append(l.left, res.left)
			l.probesOut = append(l.probesOut, len(res.lat))
		}
		lines = append(lines, l)
	}
	fmt.Printf("\n%-28s %10s %10s %10s %10s %12s\n", "latency (medians of runs)", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "not visible")
	for _, l := range lines {
		fmt.Printf("%-28s %10.1f %10.1f %10.1f %10.1f %12d\n", l.name, median(l.p50), median(l.p99), median(l.p999), median(l.max), slices.Max(l.left))
	}
	return nil
}

// latencyRun starts target on a new topic, replays the dataset into it at
// rate records/s for latDuration, and measures for every latEvery-th
// record the time from handing it to the producer to the target's watch
// seeing it. The first second is warm-up and not counted.
func latencyRun(ctx context.Context, brokers []string, data, topic string, partitions int, rate float64, target latencyTarget) (latencyResult, error) {
	res := latencyResult{load: loadAverage()}
	if err := createTopic(brokers, topic, partitions); err != nil {
		return res, err
	}
	defer target.close()
	if err := target.start(ctx, topic); err != nil {
		return res, err
	}
	pcfg := dataset.NewProducerConfig()
	pcfg.Producer.Flush.Frequency = time.Millisecond
	producer, err := sarama.NewAsyncProducer(brokers, pcfg)
	if err != nil {
		return res, err
	}
	r, err := dataset.Open(data, dataset.Options{})
	if err != nil {
		producer.Close()
		return res, err
	}
	defer r.Close()

	ps := &probes{warm: time.Now().Add(time.Second)}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // acks: successes become probes
		defer wg.Done()
		for m := range producer.Successes() {
			if p, ok := m.Metadata.(*probe); ok {
				p.partition, p.offset = m.Partition, m.Offset
				ps.acked(*p)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for err := range producer.Errors() {
			fmt.Fprintln(os.Stderr, "bench: latency: produce:", err.Err)
		}
	}()
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); target.watch(watchCtx, ps) }()

	// Steady replay: rate records/s, paced every millisecond.
	start := time.Now()
	for time.Since(start) < latDuration {
		due := int(rate * time.Since(start).Seconds())
		for ; res.sent < due; res.sent++ {
			rec, err := r.Next()
			if err != nil {
				break
			}
			m := &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(rec.Key), Value: sarama.ByteEncoder(rec.Value)}
			if res.sent%latEvery == 0 {
				if ms, ok := dataset.ParseEventTime(rec.EventTime); ok {
					m.Metadata = &probe{eventTime: storedTime(ms), sent: time.Now()}
				}
			}
			producer.Input() <- m
		}
		time.Sleep(time.Millisecond)
	}
	res.elapsed = time.Since(start)
	producer.AsyncClose()
	wg.Wait()
	// Wait (at most 10 s) for the last probes.
	for deadline := time.Now().Add(10 * time.Second); ps.left() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	stopWatch()
	<-watchDone
	res.left = ps.left()
	if e, ok := target.(interface{ explain() string }); ok {
		res.explain = e.explain()
	}
	ps.mu.Lock()
	res.lat = ps.lat
	ps.mu.Unlock()
	return res, nil
}

// createTopic creates topic with partitions partitions on the broker.
func createTopic(brokers []string, topic string, partitions int) error {
	admin, err := sarama.NewClusterAdmin(brokers, kafkaconf.MustNew("eddy-bench", "", kafkaconf.Security{}))
	if err != nil {
		return err
	}
	defer admin.Close()
	return admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: int32(partitions), ReplicationFactor: 1}, false)
}

// loadAverage returns the 1-, 5- and 15-minute load averages of
// /proc/loadavg ("?" where there is none).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// pollMySQL polls the readings table of db (and late_records, for a
// record behind the watermark) by primary key every 2 ms for the waiting
// probes, with committed reads, until ctx ends.
func pollMySQL(ctx context.Context, db *sql.DB, ps *probes) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		batch := ps.pending(200)
		if len(batch) == 0 {
			continue
		}
		var q strings.Builder
		q.WriteString("SELECT source_partition, source_offset FROM readings WHERE (event_time, source_partition, source_offset) IN (")
		args := make([]any, 0, 5*len(batch))
		for i, p := range batch {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?,?,?)")
			args = append(args, p.eventTime, p.partition, p.offset)
		}
		q.WriteString(") UNION ALL SELECT source_partition, source_offset FROM late_records WHERE (source_partition, source_offset) IN (")
		for i, p := range batch {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?,?)")
			args = append(args, p.partition, p.offset)
		}
		q.WriteByte(')')
		rows, err := db.QueryContext(ctx, q.String(), args...)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "bench: latency: poll:", err)
			}
			continue
		}
		now := time.Now()
		seen := map[[2]int64]bool{}
		for rows.Next() {
			var p, o int64
			if rows.Scan(&p, &o) == nil {
				seen[[2]int64{p, o}] = true
			}
		}
		rows.Close()
		ps.seen(seen, now)
	}
}

// runTarget is the job in this process, unbounded, into a fresh MySQL
// database, as eddy run runs it.
type runTarget struct {
	brokers []string
	reg     *prometheus.Registry // the job's and the sink's metrics
	drop    func()
	sink    sinks.Sink
	poll    *sql.DB
	job     backgroundJob
}

// backgroundJob is a job running until stop, as eddy run runs it.
type backgroundJob struct {
	cancel context.CancelFunc
	done   chan error
}

// run starts job.Run in a goroutine under a context of its own derived
// from ctx.
func (b *backgroundJob) run(ctx context.Context, job *actors.Job) {
	var jobCtx context.Context
	jobCtx, b.cancel = context.WithCancel(ctx)
	b.done = make(chan error, 1)
	go func() { _, err := job.Run(jobCtx); b.done <- err }()
}

// stop cancels a started job and waits for Run to return; a no-op if it
// never started.
func (b *backgroundJob) stop() {
	if b.cancel != nil {
		b.cancel()
		<-b.done
	}
}

func (t *runTarget) start(ctx context.Context, topic string) error {
	dsn, drop, err := freshMySQL(ctx, topic)
	if err != nil {
		return err
	}
	t.drop = drop
	t.reg = prometheus.NewRegistry()
	if t.sink, err = sinks.NewMySQL(dsn, mysqlSinkConfig(), t.reg); err != nil {
		return err
	}
	if err := t.sink.Open(ctx); err != nil {
		return err
	}
	if t.poll, err = sql.Open("mysql", dsn); err != nil {
		return err
	}
	cfg := actors.DefaultConfig()
	cfg.Source.Brokers = t.brokers
	cfg.Source.Topic = topic
	if latFlush > 0 {
		cfg.SinkFlushInterval = latFlush
	}
	jobKnobs(&cfg)
	job, err := actors.NewJob(cfg, t.sink, nil, t.reg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	t.job.run(ctx, job)
	return nil
}

func (t *runTarget) watch(ctx context.Context, ps *probes) { pollMySQL(ctx, t.poll, ps) }

// explain returns where the time went by the job's own histograms (whole
// run, warm-up included): eddy_record_latency_seconds (Kafka timestamp to
// the sink commit, every record) and eddy_sink_flush_seconds (one MySQL
// write of the buffered rows).
func (t *runTarget) explain() string {
	mfs, err := t.reg.Gather()
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, mf := range mfs {
		name := mf.GetName()
		if name != "eddy_record_latency_seconds" && name != "eddy_sink_flush_seconds" {
			continue
		}
		var count uint64
		buckets := map[float64]uint64{}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			count += h.GetSampleCount()
			for _, b := range h.GetBucket() {
				buckets[b.GetUpperBound()] += b.GetCumulativeCount()
			}
		}
		bounds := slices.Sorted(maps.Keys(buckets))
		q := func(p float64) string {
			for _, b := range bounds {
				if float64(buckets[b]) >= p*float64(count) {
					return fmt.Sprintf("≤ %g ms", b*1000)
				}
			}
			return "> " + fmt.Sprint(bounds[len(bounds)-1]*1000) + " ms"
		}
		if count > 0 {
			out = append(out, fmt.Sprintf("%s: %d, p50 %s, p99 %s", name, count, q(0.5), q(0.99)))
		}
	}
	return strings.Join(out, "; ")
}

func (t *runTarget) close() {
	t.job.stop()
	if t.sink != nil {
		t.sink.Close()
	}
	if t.poll != nil {
		t.poll.Close()
	}
	if t.drop != nil {
		t.drop()
	}
}

// storedTime formats ms since the epoch as MySQL's DATETIME(3) text.
func storedTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000")
}
