package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-sql-driver/mysql"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/dataset"
	"github.com/eddy-iot/eddy/sinks"
)

// The --latency-* flags.
var (
	latRate     float64
	latDuration time.Duration
	latEvery    int
)

// latencyTopic is the topic the latency benchmark produces to (empty at
// start, so the job has no backlog).
const latencyTopic = "iot-latency"

// probe is a produced record whose arrival in the readings table is
// awaited: its key there, and when it was handed to the producer.
type probe struct {
	partition int32
	offset    int64
	eventTime string // as the sink stores it
	sent      time.Time
}

// runLatency runs the job, unbounded, into the MySQL sink (a fresh
// database), replays the dataset at rate records/s for latDuration, and
// measures for every latEvery-th record the time from handing it to the
// producer to its row being visible in readings, or late_records for a
// record behind the watermark (polled by primary key every 2 ms,
// committed reads). The first second is warm-up and not
// counted. It prints p50, p99, p99.9 and max.
func runLatency(ctx context.Context, brokers []string, data string, rate float64) error {
	mc, err := mysql.ParseDSN(mysqlDSN)
	if err != nil {
		return fmt.Errorf("--mysql-dsn: %w", err)
	}
	mc.DBName = ""
	admin, err := sql.Open("mysql", mc.FormatDSN())
	if err != nil {
		return err
	}
	defer admin.Close()
	name := fmt.Sprintf("eddy_bench_%d_latency", os.Getpid())
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		return fmt.Errorf("latency benchmark needs a MariaDB/MySQL server (--mysql-dsn or EDDY_MYSQL_DSN): %w", err)
	}
	defer admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS `"+name+"`")
	mc.DBName = name
	scfg := sinks.DefaultConfig()
	scfg.BatchRows = batchRows
	scfg.Conns = mysqlConns
	scfg.BatchBytes = mysqlBatchBytes
	sink, err := sinks.NewMySQL(mc.FormatDSN(), scfg, nil)
	if err != nil {
		return err
	}
	defer sink.Close()
	if err := sink.Open(ctx); err != nil {
		return err
	}
	poll, err := sql.Open("mysql", mc.FormatDSN())
	if err != nil {
		return err
	}
	defer poll.Close()

	// The job, unbounded, on the empty topic.
	jobCtx, stopJob := context.WithCancel(ctx)
	defer stopJob()
	cfg := actors.DefaultConfig()
	cfg.Source.Brokers = brokers
	cfg.Source.Topic = latencyTopic
	job, err := actors.NewJob(cfg, sink, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	jobDone := make(chan error, 1)
	go func() { _, err := job.Run(jobCtx); jobDone <- err }()

	pcfg := dataset.NewProducerConfig()
	pcfg.Producer.Flush.Frequency = time.Millisecond
	producer, err := sarama.NewAsyncProducer(brokers, pcfg)
	if err != nil {
		return err
	}
	r, err := dataset.Open(data, dataset.Options{})
	if err != nil {
		producer.Close()
		return err
	}
	defer r.Close()

	var (
		mu      sync.Mutex
		waiting []probe
		lat     []float64 // ms
		warm    = time.Now().Add(time.Second)
	)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // acks: successes become probes
		defer wg.Done()
		for m := range producer.Successes() {
			if p, ok := m.Metadata.(*probe); ok {
				p.partition, p.offset = m.Partition, m.Offset
				mu.Lock()
				waiting = append(waiting, *p)
				mu.Unlock()
			}
		}
	}()
	go func() {
		defer wg.Done()
		for err := range producer.Errors() {
			fmt.Fprintln(os.Stderr, "bench: latency: produce:", err.Err)
		}
	}()
	pollDone := make(chan struct{})
	stopPoll := make(chan struct{})
	go func() { // poll the readings table for the waiting probes
		defer close(pollDone)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
			case <-stopPoll:
				return
			}
			mu.Lock()
			batch := slices.Clone(waiting[:min(len(waiting), 200)])
			mu.Unlock()
			if len(batch) == 0 {
				continue
			}
			// A record behind the watermark lands in late_records instead.
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
			rows, err := poll.QueryContext(ctx, q.String(), args...)
			if err != nil {
				fmt.Fprintln(os.Stderr, "bench: latency: poll:", err)
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
			mu.Lock()
			kept := waiting[:0]
			for _, p := range waiting {
				if seen[[2]int64{int64(p.partition), p.offset}] {
					if p.sent.After(warm) {
						lat = append(lat, float64(now.Sub(p.sent).Microseconds())/1000)
					}
					continue
				}
				kept = append(kept, p)
			}
			waiting = kept
			mu.Unlock()
		}
	}()

	// Steady replay: rate records/s, paced every millisecond.
	start := time.Now()
	sent := 0
	for time.Since(start) < latDuration {
		due := int(rate * time.Since(start).Seconds())
		for ; sent < due; sent++ {
			rec, err := r.Next()
			if err != nil {
				break
			}
			m := &sarama.ProducerMessage{Topic: latencyTopic, Key: sarama.ByteEncoder(rec.Key), Value: sarama.ByteEncoder(rec.Value)}
			if sent%latEvery == 0 {
				if ms, ok := dataset.ParseEventTime(rec.EventTime); ok {
					m.Metadata = &probe{eventTime: storedTime(ms), sent: time.Now()}
				}
			}
			producer.Input() <- m
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	producer.AsyncClose()
	wg.Wait()
	// Wait (at most 10 s) for the last probes.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(waiting)
		mu.Unlock()
		if n == 0 {
			break
		}
	}
	close(stopPoll)
	<-pollDone
	stopJob()
	<-jobDone
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("\nlatency: %d records in %s (%.0f records/s, target %.0f) into mysql, %d probes (every %d-th record, after 1 s of warm-up), %d not visible within 10 s\n",
		sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), rate, len(lat), latEvery, len(waiting))
	fmt.Printf("  produce → row visible in the sink: p50 %.1f ms  p99 %.1f ms  p99.9 %.1f ms  max %.1f ms\n",
		pct(lat, 50), pct(lat, 99), pct(lat, 99.9), pct(lat, 100))
	return nil
}

// storedTime formats ms since the epoch as MySQL's DATETIME(3) text.
func storedTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000")
}
