package actors

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
)

// maxTracked bounds the record timestamps one partition keeps while its
// output is not yet committed (8 bytes each: 8 MiB). Records beyond it, in
// a long sink outage, are not observed in eddy_record_latency_seconds.
const maxTracked = 1 << 20

// latencyTracker holds, for one partition, the Kafka timestamps (Unix ms)
// of the records whose sink writes are not yet known to be committed, and
// observes eddy_record_latency_seconds for each once they are: the record
// latency is from a record's Kafka timestamp to the sink commit that made
// what the record produced durable and visible.
//
// The commit of a record's output is, for a job without transactional
// sinks, the first successful flush of every plain sink (Job.Flush: the
// periodic flush, the pre-commit at a checkpoint barrier, the flush at the
// bounded end) that began after the sink writes of the record's batch
// returned; for a job with transactional sinks (Kafka with checkpoints),
// the commit of the first checkpoint whose barrier came after the record.
// Rows a SQL sink writes on its own once BatchRows rows are buffered are
// durable a little earlier than the next flush, which is what is observed:
// the latency is an upper bound by at most the flush interval
// (Config.SinkFlushInterval, default 500 ms) there. What a record contributes to a window that fires later is not
// covered: its latency ends with the commit of its own rows (reading, late
// record or dead letter). Records replayed after a restore are observed
// again. A record without a timestamp (before Kafka 0.10) is not observed.
//
// Cost: 8 bytes per record kept until its commit, in slices reused from
// one commit to the next (no allocation per record), one mutex acquisition
// per batch and per commit, and one histogram observation per record at
// commit: about 0.1 µs per record in all (BenchmarkLatencyTracker, 2 busy
// cores). Safe for concurrent use: the actor adds, flushes commit.
type latencyTracker struct {
	hist prometheus.Observer

	mu sync.Mutex
	ts []int64 // Kafka timestamps, Unix ms, in processing order
	// marks split ts into runs: ts[prev end:end] were written before the
	// commit numbered stamp+1 started; stamps do not decrease.
	marks []latencyMark
	// sealed is the end of ts the last mark covers.
	sealed int
}

type latencyMark struct {
	end   int
	stamp uint64
}

// add appends the timestamps of records (not yet sealed into a run).
func (l *latencyTracker) add(records []*sarama.ConsumerMessage) {
	l.mu.Lock()
	for _, m := range records {
		if len(l.ts) >= maxTracked {
			break
		}
		if ms := m.Timestamp.UnixMilli(); ms > 0 {
			l.ts = append(l.ts, ms)
		}
	}
	l.mu.Unlock()
}

// seal closes the run of the timestamps added so far under stamp: they
// are observed by the first commit(c) with c > stamp.
func (l *latencyTracker) seal(stamp uint64) {
	l.mu.Lock()
	if n := len(l.ts); n > l.sealed {
		if k := len(l.marks); k > 0 && l.marks[k-1].stamp == stamp {
			l.marks[k-1].end = n
		} else {
			l.marks = append(l.marks, latencyMark{end: n, stamp: stamp})
		}
		l.sealed = n
	}
	l.mu.Unlock()
}

// commit observes, at now, the latency of every record in a run sealed
// with a stamp below c, and forgets them.
func (l *latencyTracker) commit(c uint64, now time.Time) {
	nowMs := now.UnixMilli()
	l.mu.Lock()
	defer l.mu.Unlock()
	k, end := 0, 0
	for k < len(l.marks) && l.marks[k].stamp < c {
		end = l.marks[k].end
		k++
	}
	if k == 0 {
		return
	}
	for _, ms := range l.ts[:end] {
		l.hist.Observe(float64(max(0, nowMs-ms)) / 1000)
	}
	n := copy(l.ts, l.ts[end:])
	l.ts = l.ts[:n]
	m := copy(l.marks, l.marks[k:])
	l.marks = l.marks[:m]
	for i := range l.marks {
		l.marks[i].end -= end
	}
	l.sealed -= end
}

// written is called on the actor goroutine once the sink writes of batch
// b returned nil: its records wait for the next commit.
func (t *partitionTask) written(b *recordBatch) {
	l := &t.lat
	l.add(b.records)
	if len(t.job.tx) == 0 {
		// Flushes that start from now on commit these rows.
		l.seal(t.job.flushes.Load())
	}
}

// Flush flushes every sink of the job (Sink.Flush: the rows written so far
// become durable) and, when all flushes succeed and the job has no
// transactional sinks, observes the record latency of the records whose
// rows that made durable. It returns the first error. Safe for concurrent
// use with Run and with the partitions of a Runtime.
func (j *Job) Flush(ctx context.Context) error {
	first := j.flushPlain(ctx)
	for _, s := range j.tx {
		if err := s.Flush(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// flushPlain flushes every plain sink (all of them, even after an error)
// and returns the first error; when all succeed and the job has no
// transactional sinks, the rows written before it began are committed.
func (j *Job) flushPlain(ctx context.Context) error {
	stamp := j.flushes.Add(1) // runs sealed below stamp were written before this flush began
	var first error
	for _, s := range j.plain {
		if err := s.Flush(ctx); err != nil && first == nil {
			first = err
		}
	}
	if first == nil && len(j.tx) == 0 {
		j.committed(stamp)
	}
	return first
}

// committed observes the records of every live partition sealed below c.
func (j *Job) committed(c uint64) {
	now := time.Now()
	j.liveMu.Lock()
	defer j.liveMu.Unlock()
	for t := range j.live {
		t.lat.commit(c, now)
	}
}

// addLive and removeLive maintain the partitions whose record latency and
// event-time lag the job reports.
func (j *Job) addLive(t *partitionTask) {
	j.liveMu.Lock()
	j.live[t] = struct{}{}
	j.liveMu.Unlock()
}

func (j *Job) removeLive(t *partitionTask) {
	j.liveMu.Lock()
	delete(j.live, t)
	j.liveMu.Unlock()
}

// eventTimeLag is the collector of eddy_event_time_lag_seconds{partition}:
// at each scrape, for each partition running on this node that has a
// watermark and has not reached its bounded end, the wall clock minus the
// partition's watermark, in seconds.
type eventTimeLag struct {
	j *Job

	mu  sync.Mutex // one scrape at a time refills vec
	vec *prometheus.GaugeVec
}

func newEventTimeLag(j *Job) *eventTimeLag {
	return &eventTimeLag{j: j, vec: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eddy_event_time_lag_seconds",
		Help: "Wall clock minus the event-time watermark of a partition running on this node, in seconds, computed at each scrape: how far event-time results (windows, work periods) trail real time. Absent before the partition's first valid record and after its bounded end.",
	}, []string{"partition"})}
}

func (c *eventTimeLag) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

func (c *eventTimeLag) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vec.Reset()
	now := time.Now().UnixMilli()
	c.j.liveMu.Lock()
	for t := range c.j.live {
		wm := t.watermark.Load()
		if wm == math.MinInt64 || wm == math.MaxInt64 || t.done.Load() {
			continue
		}
		c.vec.WithLabelValues(partitionLabel(t.partition)).Set(float64(now-wm) / 1000)
	}
	c.j.liveMu.Unlock()
	c.vec.Collect(ch)
}
