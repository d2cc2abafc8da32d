package sinks

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Table names, also the value of the "table" label and of the NDJSON field
// "table".
const (
	TableReadings     = "readings"
	TableWindows      = "window_aggregates"
	TableWorkPeriods  = "work_periods"
	TableLate         = "late_records"
	TableDeadLetters  = "dead_letters"
	ViewDailyWorkTime = "daily_work_time"
	// TableRejected holds the window aggregates and work periods a SQL
	// store refused (see ReasonSinkRejected).
	TableRejected = "rejected_rows"
)

// metrics of one sink. Several sinks may share a Registerer: the collectors
// are registered once and shared, told apart by the "sink" label (the sink
// kind: sqlite, mysql, ndjson, stdout, discard).
type metrics struct {
	rows            [numTables]prometheus.Counter // by table, in sqlTables order
	rejected        [numTables]prometheus.Counter // by table, in sqlTables order
	flushSeconds    prometheus.Observer
	partitionErrors prometheus.Counter
	bufferBytes     prometheus.Gauge
	writeErrors     prometheus.Counter
	droppedVec      *prometheus.CounterVec
	sink            string
}

// tableOrder is the order of the five output tables (the index of each in
// Kafka's topics and in the first five of metrics.rows).
var tableOrder = [5]string{TableReadings, TableWindows, TableWorkPeriods, TableLate, TableDeadLetters}

// sqlTables are the tables of the SQL sinks: the output tables and
// rejected_rows, indexed by tReadings ... tRejected.
var sqlTables = [numTables]string{TableReadings, TableWindows, TableWorkPeriods, TableLate, TableDeadLetters, TableRejected}

func newMetrics(reg prometheus.Registerer, sink string) *metrics {
	rows := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eddy_sink_rows_written_total",
		Help: "Rows written to a sink and acknowledged by its store (committed), by sink kind and table. Replayed rows count again.",
	}, []string{"sink", "table"})
	flush := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "eddy_sink_flush_seconds",
		Help:    "Time to write one group of buffered rows to a sink's store (one transaction for SQL sinks), in seconds.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms .. 16 s
	}, []string{"sink"})
	perr := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eddy_sink_partition_errors_total",
		Help: "Failed attempts of a MySQL sink to create daily partitions of the readings table; rows still land in a wider partition.",
	}, []string{"sink"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eddy_sink_rows_rejected_total",
		Help: "Rows a SQL sink's store refused (or that no SQL store can hold: a time outside years 1000-9999, a non-finite number), by sink kind and source table; each became a dead letter or a row of rejected_rows with reason sink_rejected. Replayed rows count again.",
	}, []string{"sink", "table"})
	buffered := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eddy_sink_buffer_bytes",
		Help: "Memory held by the rows a SQL sink buffers and has not yet written, in bytes, by sink kind; bounded by the sink's MaxBufferBytes, beyond which writers wait (backpressure).",
	}, []string{"sink"})
	werr := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eddy_sink_write_errors_total",
		Help: "Failed write transactions of a SQL sink (store unreachable, timeout, deadlock); the rows stay buffered and are retried.",
	}, []string{"sink"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eddy_sink_rows_dropped_total",
		Help: "Buffered rows a SQL sink discarded without writing them, by sink kind and reason: partition_stopped (the partition stopped or lost its lease), lease_expired (the lease guard said no before a write), fenced (a newer lease epoch of the partition wrote, or the write was stale), unstorable (even the rejection of a refused row was refused).",
	}, []string{"sink", "reason"})
	if reg != nil {
		rows = register(reg, rows)
		flush = register(reg, flush)
		perr = register(reg, perr)
		rejected = register(reg, rejected)
		buffered = register(reg, buffered)
		werr = register(reg, werr)
		dropped = register(reg, dropped)
	}
	m := &metrics{
		flushSeconds:    flush.WithLabelValues(sink),
		partitionErrors: perr.WithLabelValues(sink),
		bufferBytes:     buffered.WithLabelValues(sink),
		writeErrors:     werr.WithLabelValues(sink),
		droppedVec:      dropped,
		sink:            sink,
	}
	for i, t := range sqlTables {
		m.rows[i] = rows.WithLabelValues(sink, t)
		m.rejected[i] = rejected.WithLabelValues(sink, t)
	}
	return m
}

// dropped counts n rows dropped for reason.
func (m *metrics) dropped(reason string, n int) {
	if n > 0 {
		m.droppedVec.WithLabelValues(m.sink, reason).Add(float64(n))
	}
}

// rejectedRows counts rejected rows by table.
func (m *metrics) rejectedRows(n *[numTables]int) {
	for t, k := range n {
		if k > 0 {
			m.rejected[t].Add(float64(k))
		}
	}
}

// writtenSel counts the committed rows of sel.
func (m *metrics) writtenSel(sel *selection) {
	for t := range sel {
		n := 0
		for _, g := range sel[t] {
			n += g.hi - g.lo
		}
		if n > 0 {
			m.rows[t].Add(float64(n))
		}
	}
}

// register registers c, or returns the equal collector registered before.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a different metric with the same name: a programming error
	}
	return c
}

// written counts the committed rows of b.
func (m *metrics) written(b *Batch) {
	m.rows[0].Add(float64(len(b.Readings)))
	m.rows[1].Add(float64(len(b.Windows)))
	m.rows[2].Add(float64(len(b.WorkPeriods)))
	m.rows[3].Add(float64(len(b.Late)))
	m.rows[4].Add(float64(len(b.DeadLetters)))
}

func (m *metrics) observeFlush(start time.Time) {
	m.flushSeconds.Observe(time.Since(start).Seconds())
}
