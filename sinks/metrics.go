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
)

// metrics of one sink. Several sinks may share a Registerer: the collectors
// are registered once and shared, told apart by the "sink" label (the sink
// kind: sqlite, mysql, ndjson, stdout, discard).
type metrics struct {
	rows            [5]prometheus.Counter // by table, in tableOrder
	flushSeconds    prometheus.Observer
	partitionErrors prometheus.Counter
}

// tableOrder is the index of each table in metrics.rows.
var tableOrder = [5]string{TableReadings, TableWindows, TableWorkPeriods, TableLate, TableDeadLetters}

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
	if reg != nil {
		rows = register(reg, rows)
		flush = register(reg, flush)
		perr = register(reg, perr)
	}
	m := &metrics{
		flushSeconds:    flush.WithLabelValues(sink),
		partitionErrors: perr.WithLabelValues(sink),
	}
	for i, t := range tableOrder {
		m.rows[i] = rows.WithLabelValues(sink, t)
	}
	return m
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
