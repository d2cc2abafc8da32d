package main

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/eddy-iot/eddy/sinks"
)

// The store-limit variants write the rows the job writes for the dataset
// without the job: sqlite-sink and mysql-sink through the sink's
// WriteEpoch and Flush (the sink's cost and the store's), sqlite-raw and
// mysql-raw in a bare database/sql loop of multi-row upserts with the
// sink's schema (the store's cost and the driver's). The rows are captured
// once per invocation from one run of the job into captureSink.

// captured is one WriteEpoch of the job: the partition, its lease epoch and
// a deep copy of the batch.
type captured struct {
	p     int32
	epoch uint64
	b     sinks.Batch
}

// captureSink records every batch the job writes, in order; Flush counts.
type captureSink struct {
	mu      sync.Mutex
	batches []captured
	flushes int
}

var (
	_ sinks.Sink        = (*captureSink)(nil)
	_ sinks.EpochWriter = (*captureSink)(nil)
)

func (c *captureSink) Open(context.Context) error { return nil }
func (c *captureSink) Close() error               { return nil }
func (c *captureSink) Flush(context.Context) error {
	c.mu.Lock()
	c.flushes++
	c.mu.Unlock()
	return nil
}
func (c *captureSink) Write(ctx context.Context, b *sinks.Batch) error {
	return c.WriteEpoch(ctx, sinks.NoPartition, 0, b)
}
func (c *captureSink) Drop(int32) int                         { return 0 }
func (c *captureSink) SetLeaseGuard(func(int32, uint64) bool) {}
func (c *captureSink) SetBackpressureHook(func(int32, bool))  {}
func (c *captureSink) WriteEpoch(_ context.Context, p int32, epoch uint64, b *sinks.Batch) error {
	cp := sinks.Batch{
		Readings:    slices.Clone(b.Readings),
		Windows:     slices.Clone(b.Windows),
		WorkPeriods: slices.Clone(b.WorkPeriods),
		Late:        slices.Clone(b.Late),
		DeadLetters: slices.Clone(b.DeadLetters),
	}
	// The job's strings may view its reused buffers: copy them.
	for i := range cp.Readings {
		r := &cp.Readings[i]
		r.PboxID, r.Company, r.Site = strings.Clone(r.PboxID), strings.Clone(r.Company), strings.Clone(r.Site)
	}
	for i := range cp.Windows {
		w := &cp.Windows[i]
		w.PboxID, w.Company, w.Site = strings.Clone(w.PboxID), strings.Clone(w.Company), strings.Clone(w.Site)
	}
	for i := range cp.WorkPeriods {
		w := &cp.WorkPeriods[i]
		w.PboxID, w.Company, w.Site = strings.Clone(w.PboxID), strings.Clone(w.Company), strings.Clone(w.Site)
	}
	for i := range cp.Late {
		l := &cp.Late[i]
		l.PboxID, l.Reason, l.Payload = strings.Clone(l.PboxID), strings.Clone(l.Reason), slices.Clone(l.Payload)
	}
	for i := range cp.DeadLetters {
		d := &cp.DeadLetters[i]
		d.Reason, d.Payload = strings.Clone(d.Reason), slices.Clone(d.Payload)
	}
	c.mu.Lock()
	c.batches = append(c.batches, captured{p, epoch, cp})
	c.mu.Unlock()
	return nil
}

// jobRows is what the job wrote for the dataset, captured once.
type jobRows struct {
	batches []captured
	flushes int
	counts  [5]int // readings, windows, work periods, late, dead letters
}

func (j *jobRows) rows() int {
	n := 0
	for _, c := range j.counts {
		n += c
	}
	return n
}

// captureJobRows runs the job once into a captureSink.
func captureJobRows(ctx context.Context, brokers []string, n int64) (*jobRows, error) {
	c := &captureSink{}
	if _, err := runJob(ctx, brokers, c, n); err != nil {
		return nil, fmt.Errorf("capture the job's rows: %w", err)
	}
	j := &jobRows{batches: c.batches, flushes: c.flushes}
	for _, b := range j.batches {
		j.counts[0] += len(b.b.Readings)
		j.counts[1] += len(b.b.Windows)
		j.counts[2] += len(b.b.WorkPeriods)
		j.counts[3] += len(b.b.Late)
		j.counts[4] += len(b.b.DeadLetters)
	}
	return j, nil
}

// sinkOnly writes the captured rows through s (opened here) with
// WriteEpoch, in the job's order, flushing every len(batches)/flushes
// batches as the job did, and closes it: the sink's own limit.
func sinkOnly(ctx context.Context, s interface {
	sinks.Sink
	sinks.EpochWriter
}, j *jobRows) (time.Duration, error) {
	defer s.Close()
	if err := s.Open(ctx); err != nil {
		return 0, err
	}
	every := len(j.batches)/max(1, j.flushes) + 1
	markTimed()
	start := time.Now()
	for i := range j.batches {
		c := &j.batches[i]
		if err := s.WriteEpoch(ctx, c.p, c.epoch, &c.b); err != nil {
			return 0, err
		}
		if i%every == every-1 {
			if err := s.Flush(ctx); err != nil {
				return 0, err
			}
		}
	}
	if err := s.Flush(ctx); err != nil {
		return 0, err
	}
	if err := s.Close(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// rawOpts are the options of a sqlite-raw or mysql-raw variant, written
// after a slash and joined by '+': sqlite-raw/ms+dict+page=16384.
type rawOpts struct {
	ms bool // times as INTEGER Unix ms instead of TEXT (sqlite)
	// msgen: times stored as INTEGER Unix ms in columns <name>_ms, the
	// TEXT columns of the sink's names VIRTUAL generated from them
	// (sqlite; the queries of the text schema keep working).
	msgen    bool
	dict     bool // devices table; readings, windows, work periods carry an integer device key (sqlite)
	pageSize int  // PRAGMA page_size of the fresh file (sqlite; 0: the default, 4096)
	stmtRows int  // rows per multi-row statement (0: --batch-rows)
	txRows   int  // rows per transaction (0: as many as the job's average flush)
	noPrep   bool // Exec the statement text each time instead of a statement prepared once
	insert   bool // plain INSERT, no upsert clause
}

func parseRawOpts(s string) (rawOpts, error) {
	var o rawOpts
	if s == "" {
		return o, nil
	}
	for _, f := range strings.Split(s, "+") {
		k, v, _ := strings.Cut(f, "=")
		var err error
		switch k {
		case "ms":
			o.ms = true
		case "msgen":
			o.ms, o.msgen = true, true
		case "dict":
			o.dict = true
		case "page":
			o.pageSize, err = strconv.Atoi(v)
		case "rows":
			o.stmtRows, err = strconv.Atoi(v)
		case "tx":
			o.txRows, err = strconv.Atoi(v)
		case "noprep":
			o.noPrep = true
		case "insert":
			o.insert = true
		default:
			return o, fmt.Errorf("unknown option %q (want ms, msgen, dict, page=N, rows=N, tx=N, noprep, insert)", f)
		}
		if err != nil {
			return o, fmt.Errorf("option %q: %w", f, err)
		}
	}
	return o, nil
}

// rawTable is one table of the bare loop: its columns (epoch last), key,
// and every row's values, flattened (len(cols) values per row).
type rawTable struct {
	name string
	cols []string
	key  []string
	args []any
}

func (t *rawTable) rows() int { return len(t.args) / len(t.cols) }

// textTime is ms as the sink's SQL text (UTC, three fraction digits).
func textTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000")
}

func nullF(f float64) any {
	if math.IsNaN(f) {
		return nil
	}
	return f
}

// rawTables lays the captured rows out as the sink binds them (or as the
// options change them); with dict, devices maps (pboxid, company, site)
// to the device key.
func rawTables(j *jobRows, o rawOpts) (ts []*rawTable, devices map[[3]string]int64) {
	tm := func(ms int64) any {
		if o.ms {
			return ms
		}
		return textTime(ms)
	}
	devices = map[[3]string]int64{}
	dev := func(id, company, site string) int64 {
		k := [3]string{id, company, site}
		d, ok := devices[k]
		if !ok {
			d = int64(len(devices) + 1)
			devices[k] = d
		}
		return d
	}
	rd := &rawTable{name: "readings", key: []string{"event_time", "source_partition", "source_offset"}}
	wa := &rawTable{name: "window_aggregates", key: []string{"pboxid", "window_start"}}
	wp := &rawTable{name: "work_periods", key: []string{"pboxid", "period_start"}}
	if o.dict {
		rd.cols = []string{"source_partition", "source_offset", "device", "event_time", "metric", "latitude", "longitude", "epoch"}
		wa.cols = []string{"device", "window_start", "window_end", "count", "sum", "min", "max", "avg", "latitude", "longitude", "epoch"}
		wp.cols = []string{"device", "period_start", "period_end", "duration_s", "samples", "avg_metric", "max_metric", "epoch"}
		wa.key = []string{"device", "window_start"}
		wp.key = []string{"device", "period_start"}
	} else {
		rd.cols = []string{"source_partition", "source_offset", "pboxid", "event_time", "metric", "latitude", "longitude", "company", "site", "epoch"}
		wa.cols = []string{"pboxid", "window_start", "window_end", "count", "sum", "min", "max", "avg", "latitude", "longitude", "company", "site", "epoch"}
		wp.cols = []string{"pboxid", "period_start", "period_end", "duration_s", "samples", "avg_metric", "max_metric", "company", "site", "epoch"}
	}
	lt := &rawTable{name: "late_records", key: []string{"source_partition", "source_offset"},
		cols: []string{"source_partition", "source_offset", "pboxid", "event_time", "watermark", "reason", "payload", "payload_bytes", "epoch"}}
	dl := &rawTable{name: "dead_letters", key: []string{"source_partition", "source_offset"},
		cols: []string{"source_partition", "source_offset", "reason", "payload", "payload_bytes", "epoch"}}
	for _, c := range j.batches {
		ep := int64(c.epoch)
		for _, r := range c.b.Readings {
			if o.dict {
				rd.args = append(rd.args, int64(r.Partition), r.Offset, dev(r.PboxID, r.Company, r.Site), tm(r.EventTime), r.Metric,
					nullF(r.Latitude), nullF(r.Longitude), ep)
			} else {
				rd.args = append(rd.args, int64(r.Partition), r.Offset, r.PboxID, tm(r.EventTime), r.Metric,
					nullF(r.Latitude), nullF(r.Longitude), r.Company, r.Site, ep)
			}
		}
		for _, w := range c.b.Windows {
			if o.dict {
				wa.args = append(wa.args, dev(w.PboxID, w.Company, w.Site), tm(w.Start), tm(w.End), w.Count, w.Sum, w.Min, w.Max, w.Avg,
					nullF(w.Latitude), nullF(w.Longitude), ep)
			} else {
				wa.args = append(wa.args, w.PboxID, tm(w.Start), tm(w.End), w.Count, w.Sum, w.Min, w.Max, w.Avg,
					nullF(w.Latitude), nullF(w.Longitude), w.Company, w.Site, ep)
			}
		}
		for _, w := range c.b.WorkPeriods {
			if o.dict {
				wp.args = append(wp.args, dev(w.PboxID, w.Company, w.Site), tm(w.Start), tm(w.End), w.DurationSeconds(), w.Samples,
					w.AvgMetric, w.MaxMetric, ep)
			} else {
				wp.args = append(wp.args, w.PboxID, tm(w.Start), tm(w.End), w.DurationSeconds(), w.Samples,
					w.AvgMetric, w.MaxMetric, w.Company, w.Site, ep)
			}
		}
		for _, l := range c.b.Late {
			lt.args = append(lt.args, int64(l.Partition), l.Offset, l.PboxID, tm(l.EventTime), tm(l.Watermark), l.Reason,
				append([]byte{}, l.Payload...), int64(len(l.Payload)), ep)
		}
		for _, d := range c.b.DeadLetters {
			dl.args = append(dl.args, int64(d.Partition), d.Offset, d.Reason, append([]byte{}, d.Payload...), int64(len(d.Payload)), ep)
		}
	}
	ts = []*rawTable{rd, wa, wp, lt, dl}
	if o.msgen {
		for _, t := range ts {
			for _, names := range [][]string{t.cols, t.key} {
				for i, c := range names {
					if isTimeCol(c) {
						names[i] = c + "_ms"
					}
				}
			}
		}
	}
	return ts, devices
}

func isTimeCol(c string) bool {
	switch c {
	case "event_time", "watermark", "window_start", "window_end", "period_start", "period_end":
		return true
	}
	return false
}

// upsertSQL is the multi-row statement of n rows into t in the sink's
// form: SQLite's ON CONFLICT ... DO UPDATE ... WHERE excluded.epoch >=
// t.epoch, MySQL's ON DUPLICATE KEY UPDATE with IF(VALUES(epoch) >= epoch).
func upsertSQL(mysqlStyle bool, t *rawTable, n int, plain bool) string {
	q := func(s string) string { return `"` + s + `"` }
	if mysqlStyle {
		q = func(s string) string { return "`" + s + "`" }
	}
	var b strings.Builder
	b.WriteString("INSERT INTO " + q(t.name) + " (")
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(q(c))
	}
	b.WriteString(") VALUES ")
	row := "(?" + strings.Repeat(",?", len(t.cols)-1) + ")"
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	if plain {
		return b.String()
	}
	var nonKey []string
	for _, c := range t.cols {
		if c != "epoch" && !slices.Contains(t.key, c) {
			nonKey = append(nonKey, c)
		}
	}
	if mysqlStyle {
		b.WriteString(" ON DUPLICATE KEY UPDATE ")
		for i, c := range nonKey {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s = IF(VALUES(`epoch`) >= `epoch`, VALUES(%s), %s)", q(c), q(c), q(c))
		}
		b.WriteString(", `epoch` = GREATEST(`epoch`, VALUES(`epoch`))")
		return b.String()
	}
	b.WriteString(" ON CONFLICT (")
	for i, k := range t.key {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(q(k))
	}
	b.WriteString(") DO UPDATE SET ")
	for _, c := range nonKey {
		fmt.Fprintf(&b, "%s = excluded.%s, ", q(c), q(c))
	}
	fmt.Fprintf(&b, `"epoch" = excluded."epoch" WHERE excluded."epoch" >= %s."epoch"`, q(t.name))
	return b.String()
}

// execer is what the bare loop runs statements on (a *sql.Conn or *sql.Tx).
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// rawWriter writes rawTables in transactions of txRows rows (the tables of
// a transaction one after the other, like a sink's flush), each table's
// rows in statements of stmtRows, the rest in powers of two (the sink's
// statement shapes), prepared once per shape unless noPrep.
type rawWriter struct {
	mysql    bool
	o        rawOpts
	stmtRows int
	txRows   int
	stmts    map[[2]int]*sql.Stmt
}

func (w *rawWriter) close() {
	for _, s := range w.stmts {
		s.Close()
	}
}

// write writes every row of ts on conn; begin and commit are the
// transaction statements (SQLite: BEGIN IMMEDIATE on the connection).
func (w *rawWriter) write(ctx context.Context, conn *sql.Conn, ts []*rawTable) error {
	w.stmts = map[[2]int]*sql.Stmt{}
	total := 0
	for _, t := range ts {
		total += t.rows()
	}
	// A transaction takes the same share of every table, as a flush
	// takes what the partitions wrote meanwhile.
	ntx := max(1, (total+w.txRows-1)/w.txRows)
	done := make([]int, len(ts))
	for k := 1; k <= ntx; k++ {
		if _, err := conn.ExecContext(ctx, w.beginSQL()); err != nil {
			return err
		}
		for ti, t := range ts {
			hi := t.rows() * k / ntx
			if err := w.table(ctx, conn, ti, t, done[ti], hi); err != nil {
				conn.ExecContext(context.Background(), "ROLLBACK")
				return fmt.Errorf("%s: %w", t.name, err)
			}
			done[ti] = hi
		}
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			return err
		}
	}
	return nil
}

func (w *rawWriter) beginSQL() string {
	if w.mysql {
		return "BEGIN"
	}
	return "BEGIN IMMEDIATE"
}

func (w *rawWriter) table(ctx context.Context, conn *sql.Conn, ti int, t *rawTable, lo, hi int) error {
	nc := len(t.cols)
	full := w.stmtRows
	if !w.mysql {
		full = max(1, min(full, 32766/nc))
	} else {
		full = max(1, min(full, 65535/nc))
	}
	for lo < hi {
		k := min(full, hi-lo)
		if k != full {
			k = 1 << (bits.Len(uint(k)) - 1)
		}
		args := t.args[lo*nc : (lo+k)*nc]
		var err error
		if w.o.noPrep {
			_, err = conn.ExecContext(ctx, upsertSQL(w.mysql, t, k, w.o.insert), args...)
		} else {
			st, ok := w.stmts[[2]int{ti, k}]
			if !ok {
				if st, err = conn.PrepareContext(ctx, upsertSQL(w.mysql, t, k, w.o.insert)); err != nil {
					return err
				}
				w.stmts[[2]int{ti, k}] = st
			}
			_, err = st.ExecContext(ctx, args...)
		}
		if err != nil {
			return err
		}
		lo += k
	}
	return nil
}

// sqliteRawSchema is the sink's schema of the three big tables with the
// options' changes (ms: INTEGER times; dict: a device key), and the
// devices table of dict. late_records and dead_letters are the sink's.
func sqliteRawSchema(o rawOpts) []string {
	tt := "TEXT"
	if o.ms {
		tt = "INTEGER"
	}
	dev := "pboxid TEXT NOT NULL,"
	extra := "company TEXT NOT NULL DEFAULT '', site TEXT NOT NULL DEFAULT '',"
	wkey, pkey := "pboxid", "pboxid"
	var out []string
	if o.dict {
		dev, extra, wkey, pkey = "device INTEGER NOT NULL,", "", "device", "device"
		out = append(out, `CREATE TABLE devices (id INTEGER PRIMARY KEY, pboxid TEXT NOT NULL, company TEXT NOT NULL, site TEXT NOT NULL, UNIQUE (pboxid, company, site)) STRICT`)
	}
	out = append(out,
		`CREATE TABLE readings (source_partition INTEGER NOT NULL, source_offset INTEGER NOT NULL, `+dev+`
	event_time `+tt+` NOT NULL, metric REAL NOT NULL, latitude REAL, longitude REAL, `+extra+`
	epoch INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (event_time, source_partition, source_offset)) WITHOUT ROWID, STRICT`,
		`CREATE TABLE window_aggregates (`+dev+` window_start `+tt+` NOT NULL, window_end `+tt+` NOT NULL,
	"count" INTEGER NOT NULL, "sum" REAL NOT NULL, "min" REAL NOT NULL, "max" REAL NOT NULL, "avg" REAL NOT NULL,
	latitude REAL, longitude REAL, `+extra+` epoch INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (`+wkey+`, window_start)) WITHOUT ROWID, STRICT`,
		`CREATE TABLE work_periods (`+dev+` period_start `+tt+` NOT NULL, period_end `+tt+` NOT NULL,
	duration_s REAL NOT NULL, samples INTEGER NOT NULL, avg_metric REAL NOT NULL, max_metric REAL NOT NULL, `+extra+`
	epoch INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (`+pkey+`, period_start)) WITHOUT ROWID, STRICT`,
		`CREATE TABLE late_records (source_partition INTEGER NOT NULL, source_offset INTEGER NOT NULL, pboxid TEXT NOT NULL,
	event_time `+tt+` NOT NULL, watermark `+tt+` NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL, payload_bytes INTEGER NOT NULL,
	epoch INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (source_partition, source_offset)) STRICT`,
		`CREATE TABLE dead_letters (source_partition INTEGER NOT NULL, source_offset INTEGER NOT NULL, reason TEXT NOT NULL,
	payload BLOB NOT NULL, payload_bytes INTEGER NOT NULL, epoch INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (source_partition, source_offset)) STRICT`)
	if !o.msgen {
		return out
	}
	// Rename every time column c to c_ms and add c as a VIRTUAL column
	// of the sink's text form (computed when read, not stored).
	gen := func(c string) string {
		return c + "_ms INTEGER NOT NULL, " + c + " TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%d %H:%M:%S', " + c +
			"_ms / 1000, 'unixepoch') || printf('.%03d', " + c + "_ms % 1000)) VIRTUAL"
	}
	for i, q := range out {
		for _, c := range []string{"event_time", "watermark", "window_start", "window_end", "period_start", "period_end"} {
			q = strings.Replace(q, c+" INTEGER NOT NULL", gen(c), 1)
			q = strings.Replace(q, "PRIMARY KEY ("+c+",", "PRIMARY KEY ("+c+"_ms,", 1)
			q = strings.Replace(q, ", "+c+")", ", "+c+"_ms)", 1)
		}
		out[i] = q
	}
	return out
}

// sqliteRaw writes the job's rows into the fresh file path in a bare
// database/sql loop: the sink's schema (created by the sink's Open) unless
// the options change it, its DSN (plus page_size), one connection.
func sqliteRaw(ctx context.Context, path string, j *jobRows, o rawOpts) (time.Duration, error) {
	ts, devices := rawTables(j, o)
	if o.pageSize > 0 {
		// The page size of a fresh file is fixed by its first write,
		// and the driver sets the DSN's journal_mode(WAL) (which writes
		// the header) before any page_size: write the header first.
		pre, err := sql.Open("sqlite", path+"?_pragma=page_size("+strconv.Itoa(o.pageSize)+")")
		if err != nil {
			return 0, err
		}
		_, err = pre.ExecContext(ctx, "CREATE TABLE bench_header (x INTEGER) STRICT")
		pre.Close()
		if err != nil {
			return 0, err
		}
	}
	dsn := sinks.SQLiteDSN(path)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if o.ms || o.dict {
		for _, q := range sqliteRawSchema(o) {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return 0, fmt.Errorf("schema: %w", err)
			}
		}
	} else {
		s, err := sinks.NewSQLite(path, sinks.DefaultConfig(), nil)
		if err != nil {
			return 0, err
		}
		if err := s.Open(ctx); err != nil {
			return 0, err
		}
		if err := s.Close(); err != nil {
			return 0, err
		}
	}
	if o.pageSize > 0 {
		var ps int
		if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&ps); err != nil {
			return 0, err
		}
		if ps != o.pageSize {
			return 0, fmt.Errorf("page_size is %d, want %d", ps, o.pageSize)
		}
	}
	markTimed()
	start := time.Now()
	if o.dict {
		for k, id := range devices {
			if _, err := conn.ExecContext(ctx, "INSERT INTO devices (id, pboxid, company, site) VALUES (?, ?, ?, ?)", id, k[0], k[1], k[2]); err != nil {
				return 0, err
			}
		}
	}
	w := &rawWriter{o: o, stmtRows: or(o.stmtRows, batchRows), txRows: or(o.txRows, avgFlushRows(j))}
	defer w.close()
	if err := w.write(ctx, conn, ts); err != nil {
		return 0, err
	}
	// The sink's Flush ends with an fsync of the WAL: so does this.
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=FULL"); err != nil {
		return 0, err
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE; PRAGMA user_version = 1; COMMIT"); err != nil {
		return 0, err
	}
	d := time.Since(start)
	return d, checkReadings(ctx, conn, "sqlite-raw", j.counts[0])
}

// avgFlushRows is the rows per transaction of the sink-only run: the rows
// over the flushes the job did, bounded like a sink's auto-write (16 ×
// --batch-rows at most).
func avgFlushRows(j *jobRows) int {
	n := j.rows() / max(1, j.flushes)
	return max(batchRows, min(n, 16*batchRows))
}

func or(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// mysqlSinkOnly writes the job's rows through the MySQL sink into a fresh
// database.
func mysqlSinkOnly(ctx context.Context, j *jobRows, run int) (time.Duration, error) {
	dsn, drop, err := freshMySQL(ctx, fmt.Sprintf("sink_%d", run))
	if err != nil {
		return 0, err
	}
	defer drop()
	s, err := sinks.NewMySQL(dsn, mysqlSinkConfig(), nil)
	if err != nil {
		return 0, err
	}
	return sinkOnly(ctx, s, j)
}

// mysqlRaw writes the job's rows into a fresh database with the sink's
// schema (created by the sink's Open) in a bare database/sql loop on one
// connection, with the sink's DSN settings (interpolateParams).
func mysqlRaw(ctx context.Context, j *jobRows, run int, o rawOpts) (time.Duration, error) {
	if o.ms || o.dict || o.pageSize > 0 {
		return 0, fmt.Errorf("mysql-raw takes only rows=, tx=, noprep and insert")
	}
	dsn, drop, err := freshMySQL(ctx, fmt.Sprintf("raw_%d", run))
	if err != nil {
		return 0, err
	}
	defer drop()
	s, err := sinks.NewMySQL(dsn, mysqlSinkConfig(), nil)
	if err != nil {
		return 0, err
	}
	if err := s.Open(ctx); err != nil {
		return 0, err
	}
	if err := s.Close(); err != nil {
		return 0, err
	}
	mc, err := sinks.NormalizeMySQLDSN(dsn)
	if err != nil {
		return 0, err
	}
	db, err := sql.Open("mysql", mc.FormatDSN())
	if err != nil {
		return 0, err
	}
	defer db.Close()
	ts, _ := rawTables(j, o)
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	markTimed()
	start := time.Now()
	w := &rawWriter{mysql: true, o: o, stmtRows: or(o.stmtRows, batchRows), txRows: or(o.txRows, avgFlushRows(j))}
	defer w.close()
	if err := w.write(ctx, conn, ts); err != nil {
		return 0, err
	}
	d := time.Since(start)
	return d, checkReadings(ctx, conn, "mysql-raw", j.counts[0])
}

// timedStart is set by a variant that prepares its data inside its run
// (markTimed): the run's CPU is counted from there.
var timedStart struct {
	set     bool
	cpu, db time.Duration
}

// markTimed collects the garbage of the preparation and marks the start of
// the timed part of a run.
func markTimed() {
	runtime.GC()
	timedStart.set = true
	timedStart.cpu = processCPU()
	timedStart.db, _ = mariadbCPU()
}

// processCPU is this process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// mariadbCPU is the user+system CPU time of the local mariadbd (or
// mysqld) processes so far, from /proc/<pid>/stat (clock ticks of 1/100 s),
// and whether one was found.
func mariadbCPU() (time.Duration, bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	var total time.Duration
	found := false
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		if comm := s[open+1 : close]; comm != "mariadbd" && comm != "mysqld" {
			continue
		}
		f := strings.Fields(s[close+1:])
		if len(f) < 13 { // fields 3.. of stat; utime and stime are 14 and 15
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * 10 * time.Millisecond
		found = true
	}
	return total, found
}

// checkReadings fails unless the readings table on conn holds want rows
// (what variant wrote).
func checkReadings(ctx context.Context, conn *sql.Conn, variant string, want int) error {
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM readings").Scan(&n); err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("%s stored %d readings, want %d", variant, n, want)
	}
	return nil
}
