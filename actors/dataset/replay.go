package dataset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// ErrProduce is wrapped by the error Replay returns when the broker
// rejected or failed some messages.
var ErrProduce = errors.New("dataset: produce failed")

// ErrReplayConfig wraps invalid Replay arguments.
var ErrReplayConfig = errors.New("dataset: invalid replay options")

// maxListed bounds ReplaySummary.BadRowLines and FirstErrors.
const maxListed = 10

// NewProducerConfig returns the sarama configuration Replay uses when
// ReplayOptions.Config is nil:
//
//   - sarama.NewHashPartitioner (FNV-1a of the key modulo the partition
//     count): every record of a device lands in one partition, which eddy's
//     device partitions rely on;
//   - RequiredAcks = WaitForLocal, Return.Successes and Return.Errors on;
//   - a batch is flushed when it reaches 1 MB or is 5 ms old, no
//     compression (measured best against the embedded broker);
//   - one request in flight per broker (Net.MaxOpenRequests = 1), so a
//     retried batch cannot overtake a later one: within a partition, offsets
//     follow file order (the oracle relies on this);
//   - Version kafkaconf.DefaultVersion (the one every Kafka client of eddy
//     speaks), ClientID "eddy-replay".
func NewProducerConfig() *sarama.Config {
	c := kafkaconf.MustNew("eddy-replay", kafkaconf.DefaultVersion, kafkaconf.Security{})
	c.ChannelBufferSize = 4096
	c.Net.MaxOpenRequests = 1
	c.Producer.Partitioner = sarama.NewHashPartitioner
	c.Producer.RequiredAcks = sarama.WaitForLocal
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Compression = sarama.CompressionNone
	c.Producer.Flush.Bytes = 1_000_000
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	c.Producer.Retry.Max = 5
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Metadata.Retry.Backoff = 100 * time.Millisecond
	return c
}

// ReplayOptions configures Replay. The zero value replays as fast as
// possible with NewProducerConfig and no progress reports.
type ReplayOptions struct {
	// Speed: 0 (default) sends as fast as possible; X > 0 replays at X
	// times real time: a record is sent when the wall time since the first
	// record reaches its event-time distance from the first record divided
	// by X. A record whose event time is earlier than that schedule, or
	// cannot be parsed (see ParseEventTime), is sent at once. A jump of
	// more than PaceJump of event time from the previous record (either
	// way: a poison time such as 2106-02-07 from a wrapped clock, or a gap
	// in the data) restarts the schedule at that record, which is sent at
	// once, so one bad time cannot stall the replay for years. Must be
	// >= 0.
	Speed float64

	// Limit stops after this many records were sent; 0 (default) = all.
	Limit int64

	// Progress, if not nil, is called about every ProgressInterval and once
	// at the end, from a goroutine of Replay (never concurrently with
	// itself). It must not block for long.
	Progress func(ReplayProgress)

	// ProgressInterval between Progress calls; default 1 s.
	ProgressInterval time.Duration

	// Config of the sarama producer; nil (default) = NewProducerConfig().
	// It must have Producer.Return.Successes and Return.Errors set.
	Config *sarama.Config
}

// ReplayProgress is a snapshot of a running replay.
type ReplayProgress struct {
	Rows     int64 // data rows read, bad ones included
	BadRows  int64 // rows skipped as unconvertible (*RowError)
	Sent     int64 // records handed to the producer
	Produced int64 // records acknowledged by the broker
	Failed   int64 // records the producer gave up on
	// BytesRead and BytesTotal are input bytes as stored (compressed for
	// gzip input); BytesTotal is -1 when unknown.
	BytesRead, BytesTotal int64
	Elapsed               time.Duration
	// EventTime of the last record sent (raw text).
	EventTime string
}

// ReplaySummary is the outcome of Replay.
type ReplaySummary struct {
	Rows        int64    // data rows read, bad ones included
	BadRows     int64    // rows skipped as unconvertible
	BadRowLines []int    // input lines of the first (up to 10) bad rows
	BadRowErrs  []string // their errors, same order
	Sent        int64    // records handed to the producer
	Produced    int64    // records acknowledged by the broker
	Failed      int64    // records the producer gave up on
	FirstErrors []string // the first (up to 10) produce errors
	Duration    time.Duration
	// MsgsPerSec is Produced / Duration.
	MsgsPerSec float64
}

// Replay sends every record of r to topic on the Kafka cluster at brokers,
// key = pboxid, value = seed-schema JSON, and returns when all of them are
// acknowledged or failed. Bad rows are counted and skipped. It owns the
// producer it creates and closes it before returning.
//
// Errors: ErrReplayConfig for bad arguments; a connection error when no
// broker answers; an error naming the topic when it does not exist and the
// broker does not create it; ctx.Err() when ctx is cancelled (records already handed
// to the producer are still flushed); an I/O error of r; an error wrapping
// ErrProduce when some messages failed. The summary is valid in every case.
func Replay(ctx context.Context, brokers []string, topic string, r *Reader, opts ReplayOptions) (ReplaySummary, error) {
	var sum ReplaySummary
	if len(brokers) == 0 {
		return sum, fmt.Errorf("%w: no broker address", ErrReplayConfig)
	}
	if topic == "" {
		return sum, fmt.Errorf("%w: empty topic", ErrReplayConfig)
	}
	if opts.Speed < 0 || math.IsNaN(opts.Speed) || math.IsInf(opts.Speed, 0) {
		return sum, fmt.Errorf("%w: speed %v: want 0 (as fast as possible) or a factor > 0", ErrReplayConfig, opts.Speed)
	}
	if opts.Limit < 0 {
		return sum, fmt.Errorf("%w: limit %d: want >= 0", ErrReplayConfig, opts.Limit)
	}
	cfg := opts.Config
	if cfg == nil {
		cfg = NewProducerConfig()
	}
	if !cfg.Producer.Return.Successes || !cfg.Producer.Return.Errors {
		return sum, fmt.Errorf("%w: the producer config must set Producer.Return.Successes and Producer.Return.Errors", ErrReplayConfig)
	}
	interval := opts.ProgressInterval
	if interval <= 0 {
		interval = time.Second
	}

	start := time.Now()
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		return sum, fmt.Errorf("dataset: connect to %v: %w", brokers, err)
	}
	defer client.Close()
	// Fail early and clearly on a missing topic (this metadata request also
	// creates it where the broker auto-creates topics).
	if _, err := client.Partitions(topic); err != nil {
		return sum, fmt.Errorf("dataset: topic %q on %v: %w (create the topic first, or enable auto-creation on the broker)", topic, brokers, err)
	}
	p, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		return sum, fmt.Errorf("dataset: producer: %w", err)
	}

	var (
		rows, bad, sent, produced, failed atomic.Int64
		lastEvent                         atomic.Pointer[string]
		errMu                             sync.Mutex
		wg                                sync.WaitGroup
	)
	wg.Add(2)
	go func() { // acknowledgements
		defer wg.Done()
		for range p.Successes() {
			produced.Add(1)
		}
	}()
	go func() { // failures
		defer wg.Done()
		for e := range p.Errors() {
			failed.Add(1)
			errMu.Lock()
			if len(sum.FirstErrors) < maxListed {
				sum.FirstErrors = append(sum.FirstErrors, e.Error())
			}
			errMu.Unlock()
		}
	}()
	snapshot := func() ReplayProgress {
		read, total := r.Progress()
		pr := ReplayProgress{Rows: rows.Load(), BadRows: bad.Load(), Sent: sent.Load(),
			Produced: produced.Load(), Failed: failed.Load(), BytesRead: read, BytesTotal: total,
			Elapsed: time.Since(start)}
		if s := lastEvent.Load(); s != nil {
			pr.EventTime = *s
		}
		return pr
	}
	stopProgress := make(chan struct{})
	var progressWG sync.WaitGroup
	if opts.Progress != nil {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					opts.Progress(snapshot())
				case <-stopProgress:
					return
				}
			}
		}()
	}

	pace := newPacer(opts.Speed)
	var runErr error
loop:
	for opts.Limit == 0 || sent.Load() < opts.Limit {
		rec, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			var re *RowError
			if errors.As(err, &re) {
				rows.Add(1)
				if bad.Add(1) <= maxListed {
					sum.BadRowLines = append(sum.BadRowLines, re.Line)
					sum.BadRowErrs = append(sum.BadRowErrs, re.Error())
				}
				continue
			}
			runErr = err
			break
		}
		rows.Add(1)
		if err := pace.wait(ctx, rec.EventTime); err != nil {
			runErr = err
			break
		}
		msg := &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(rec.Key), Value: sarama.ByteEncoder(rec.Value)}
		select {
		case p.Input() <- msg:
			sent.Add(1)
			et := rec.EventTime
			lastEvent.Store(&et)
		case <-ctx.Done():
			runErr = ctx.Err()
			break loop
		}
	}
	p.AsyncClose() // flushes what was sent, then closes Successes and Errors
	wg.Wait()
	close(stopProgress)
	progressWG.Wait()
	final := snapshot()
	if opts.Progress != nil {
		opts.Progress(final)
	}

	sum.Rows, sum.BadRows, sum.Sent = final.Rows, final.BadRows, final.Sent
	sum.Produced, sum.Failed = final.Produced, final.Failed
	sum.Duration = time.Since(start)
	if s := sum.Duration.Seconds(); s > 0 {
		sum.MsgsPerSec = float64(sum.Produced) / s
	}
	if runErr == nil && sum.Failed > 0 {
		runErr = fmt.Errorf("%w: %d of %d messages failed; first: %s", ErrProduce, sum.Failed, sum.Sent, sum.FirstErrors[0])
	}
	return sum, runErr
}

// PaceJump is the largest event-time step between consecutive records that
// ReplayOptions.Speed paces; a larger one restarts the schedule.
const PaceJump = 24 * time.Hour

// pacer spaces records by event time for ReplayOptions.Speed.
type pacer struct {
	speed     float64
	started   bool
	baseWall  time.Time
	baseEvent int64 // Unix ms
	last      int64 // Unix ms of the previous paced record
	timer     *time.Timer
}

func newPacer(speed float64) *pacer { return &pacer{speed: speed} }

// wait blocks until the record with event time text et is due.
func (p *pacer) wait(ctx context.Context, et string) error {
	if p.speed == 0 {
		return nil
	}
	ms, ok := ParseEventTime(et)
	if !ok {
		return nil
	}
	jump := ms - p.last
	if !p.started || jump > PaceJump.Milliseconds() || jump < -PaceJump.Milliseconds() {
		p.started, p.baseWall, p.baseEvent, p.last = true, time.Now(), ms, ms
		return nil
	}
	p.last = ms
	due := p.baseWall.Add(time.Duration(float64(ms-p.baseEvent) * float64(time.Millisecond) / p.speed))
	d := time.Until(due)
	if d < time.Millisecond {
		return ctx.Err()
	}
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-p.timer.C:
		return nil
	case <-ctx.Done():
		p.timer.Stop()
		return ctx.Err()
	}
}

// ParseEventTime parses an event_time text as the replayer's pacing reads
// it: "YYYY-MM-DD HH:MM:SS[.fff]" or with 'T' (UTC), RFC 3339 with an
// offset, or integer Unix milliseconds. It returns Unix milliseconds and
// whether the text parsed.
func ParseEventTime(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, true
	}
	for _, layout := range [...]string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UnixMilli(), true
		}
	}
	return 0, false
}
