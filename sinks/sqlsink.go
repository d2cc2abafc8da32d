package sinks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// tableDef is one output table as the SQL sinks see it: columns in the order
// of the INSERT statements, and the conflict key of the upsert.
type tableDef struct {
	name string
	cols []string
	key  []string
}

// tableDefs are the five tables, indexed like tableOrder.
var tableDefs = [5]tableDef{
	{TableReadings,
		[]string{"source_partition", "source_offset", "pboxid", "event_time", "metric", "latitude", "longitude", "company", "site"},
		[]string{"event_time", "source_partition", "source_offset"}},
	{TableWindows,
		[]string{"pboxid", "window_start", "window_end", "count", "sum", "min", "max", "avg", "latitude", "longitude", "company", "site"},
		[]string{"pboxid", "window_start"}},
	{TableWorkPeriods,
		[]string{"pboxid", "period_start", "period_end", "duration_s", "samples", "avg_metric", "max_metric", "company", "site"},
		[]string{"pboxid", "period_start"}},
	{TableLate,
		[]string{"source_partition", "source_offset", "pboxid", "event_time", "watermark", "reason", "payload", "payload_bytes"},
		[]string{"source_partition", "source_offset"}},
	{TableDeadLetters,
		[]string{"source_partition", "source_offset", "reason", "payload", "payload_bytes"},
		[]string{"source_partition", "source_offset"}},
}

// dialect is what differs between the SQL stores in the write path.
type dialect struct {
	name    string // sink kind, the metrics label
	maxVars int    // most bound parameters in one statement
	// stmtBytes bounds the estimated size of one statement (MySQL's
	// max_allowed_packet); 0 means no bound.
	stmtBytes int
	quote     func(ident string) string
	upsert    func(t *tableDef) string // the clause after VALUES
}

// insertSQL is the multi-row upsert of n rows into t.
func (d *dialect) insertSQL(t *tableDef, n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(d.quote(t.name))
	b.WriteString(" (")
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(d.quote(c))
	}
	b.WriteString(") VALUES ")
	row := "(?" + strings.Repeat(",?", len(t.cols)-1) + ")"
	b.Grow(n * (len(row) + 1))
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	b.WriteByte(' ')
	b.WriteString(d.upsert(t))
	return b.String()
}

// nonKey lists the columns of t outside its key: the ones an upsert sets.
func (t *tableDef) nonKey() []string {
	var out []string
	for _, c := range t.cols {
		isKey := false
		for _, k := range t.key {
			isKey = isKey || c == k
		}
		if !isKey {
			out = append(out, c)
		}
	}
	return out
}

type stmtKey struct{ table, rows int }

// Lifecycle states of a sqlEngine.
const (
	stateNew = iota
	stateOpen
	stateClosed
)

// sqlEngine is the write path shared by the SQL sinks: it buffers cleaned
// copies of the rows handed to write, and writes them in one transaction of
// multi-row upserts once Config.BatchRows are buffered or on flush. Rows
// leave the buffer only when their transaction commits, so a failed write is
// retried, in the same order, by the next write or flush.
type sqlEngine struct {
	d   dialect
	cfg Config
	m   *metrics
	// stmtRows is the most rows per INSERT statement (Config.BatchRows; a
	// benchmark knob).
	stmtRows int
	// beforeWrite, if set, runs before every transaction with the rows about
	// to be written (MySQL creates daily partitions there).
	beforeWrite func(ctx context.Context, p *pending)

	mu      sync.Mutex // guards everything below; held during store I/O
	state   int
	db      *sql.DB
	conn    *sql.Conn // SQLite: the one connection, with the prepared statements; nil for MySQL
	p       pending
	args    []any
	queries map[stmtKey]string
	stmts   map[stmtKey]*sql.Stmt
}

func newSQLEngine(d dialect, cfg Config, m *metrics) *sqlEngine {
	return &sqlEngine{
		d:        d,
		cfg:      cfg,
		m:        m,
		stmtRows: cfg.BatchRows,
		queries:  map[stmtKey]string{},
		stmts:    map[stmtKey]*sql.Stmt{},
	}
}

// open runs setup (which creates the schema and returns the database
// handle) unless the engine is open already.
func (e *sqlEngine) open(ctx context.Context, setup func(ctx context.Context) (*sql.DB, error)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch e.state {
	case stateOpen:
		return nil
	case stateClosed:
		return ErrClosed
	}
	db, err := setup(ctx)
	if err != nil {
		return err
	}
	e.db = db
	e.state = stateOpen
	return nil
}

func (e *sqlEngine) usable() error {
	switch e.state {
	case stateNew:
		return ErrNotOpen
	case stateClosed:
		return ErrClosed
	}
	return nil
}

func (e *sqlEngine) write(ctx context.Context, b *Batch) error {
	if err := checkBatch(b); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return err
	}
	e.p.add(b, e.cfg.MaxPayloadBytes)
	if e.p.Len() >= e.cfg.BatchRows {
		return e.writePending(ctx)
	}
	return nil
}

func (e *sqlEngine) flush(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return err
	}
	return e.writePending(ctx)
}

// close writes what is buffered (bounded by timeout), then releases the
// database. The rows are dropped if that write fails; the error says so.
func (e *sqlEngine) close(timeout time.Duration) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state == stateClosed {
		return nil
	}
	var err error
	if e.state == stateOpen {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		if n := e.p.Len(); n > 0 {
			if werr := e.writePending(ctx); werr != nil {
				err = fmt.Errorf("sinks: %s: close dropped %d unwritten rows: %w", e.d.name, n, werr)
			}
		}
		cancel()
		for _, s := range e.stmts {
			s.Close()
		}
		if e.conn != nil {
			e.conn.Close()
		}
		if cerr := e.db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("sinks: %s: close: %w", e.d.name, cerr)
		}
	}
	e.state = stateClosed
	e.p = pending{}
	return err
}

// writePending writes every buffered row in one transaction. On success
// the buffer is emptied; on failure it is kept whole.
func (e *sqlEngine) writePending(ctx context.Context) error {
	n := e.p.Len()
	if n == 0 {
		return nil
	}
	start := time.Now()
	if e.beforeWrite != nil {
		e.beforeWrite(ctx, &e.p)
	}
	err := e.writeTx(ctx)
	clear(e.args[:cap(e.args)]) // drop references to row strings and payloads
	if err != nil && e.conn != nil && errors.Is(err, sql.ErrConnDone) {
		// database/sql gave up the SQLite connection (e.g. after a
		// cancelled context): take a fresh one for the retry.
		if cerr := e.renewConn(ctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	if err != nil {
		return fmt.Errorf("sinks: %s: write %d rows (kept for retry): %w", e.d.name, n, err)
	}
	e.m.observeFlush(start)
	e.m.written(&e.p.Output)
	e.p.reset()
	return nil
}

func (e *sqlEngine) writeTx(ctx context.Context) error {
	var tx *sql.Tx
	if e.conn != nil {
		// SQLite: statements are prepared on the one connection, so the
		// transaction is driven by hand on it.
		begin := func() error { _, err := e.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); return err }
		if err := begin(); err != nil {
			// Either the BEGIN ran although ctx ended before the driver
			// returned, or an earlier ROLLBACK was cut short by the late
			// interrupt of a cancelled statement and the transaction is
			// still open: leave none open, and retry once while ctx lives.
			e.rollbackConn()
			if ctx.Err() != nil {
				return err
			}
			if err := begin(); err != nil {
				e.rollbackConn()
				return err
			}
		}
	} else {
		var err error
		if tx, err = e.db.BeginTx(ctx, nil); err != nil {
			return err
		}
	}
	rollback := func() {
		if tx != nil {
			tx.Rollback()
		} else {
			e.rollbackConn()
		}
	}
	counts := [5]int{len(e.p.Readings), len(e.p.Windows), len(e.p.WorkPeriods), len(e.p.Late), len(e.p.DeadLetters)}
	for t, n := range counts {
		if err := e.execRows(ctx, tx, t, n); err != nil {
			rollback()
			return fmt.Errorf("%s: %w", tableDefs[t].name, err)
		}
	}
	var err error
	if tx != nil {
		err = tx.Commit()
	} else if _, err = e.conn.ExecContext(ctx, "COMMIT"); err != nil {
		rollback()
	}
	return err
}

// rollbackConn ends the SQLite connection's transaction, if any. A cancelled
// statement's interrupt can land on the ROLLBACK itself, so it is tried a
// few times; "no transaction is active" also ends the loop.
func (e *sqlEngine) rollbackConn() {
	for i := 0; i < 3; i++ {
		_, err := e.conn.ExecContext(context.Background(), "ROLLBACK")
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code() != sqlite3.SQLITE_INTERRUPT {
			return
		}
	}
}

// renewConn replaces the SQLite connection and drops its statements.
func (e *sqlEngine) renewConn(ctx context.Context) error {
	for k, st := range e.stmts {
		st.Close()
		delete(e.stmts, k)
	}
	e.conn.Close()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return err
	}
	e.conn = conn
	return nil
}

// maxRows is the most rows of table t in one statement.
func (e *sqlEngine) maxRows(t int) int {
	return max(1, min(e.stmtRows, e.d.maxVars/len(tableDefs[t].cols)))
}

// execRows inserts the n pending rows of table t: full statements of
// maxRows rows, then the rest in statements whose row counts are powers of
// two, so that a handful of statement shapes per table is prepared and
// cached. With a statement size bound, statements carry fewer rows when
// their payloads are large.
func (e *sqlEngine) execRows(ctx context.Context, tx *sql.Tx, t, n int) error {
	full := e.maxRows(t)
	for i := 0; i < n; {
		k := min(full, n-i)
		if e.d.stmtBytes > 0 {
			size, fit := 0, 0
			for fit < k {
				s := e.rowSize(t, i+fit)
				if fit > 0 && size+s > e.d.stmtBytes {
					break
				}
				size += s
				fit++
			}
			k = fit
		}
		if k != full {
			k = 1 << (bits.Len(uint(k)) - 1)
		}
		args := e.args[:0]
		for r := i; r < i+k; r++ {
			args = e.appendRow(args, t, r)
		}
		e.args = args
		if err := e.exec(ctx, tx, stmtKey{t, k}, args); err != nil {
			return err
		}
		i += k
	}
	return nil
}

func (e *sqlEngine) exec(ctx context.Context, tx *sql.Tx, key stmtKey, args []any) error {
	q, ok := e.queries[key]
	if !ok {
		q = e.d.insertSQL(&tableDefs[key.table], key.rows)
		e.queries[key] = q
	}
	if tx != nil {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	st, ok := e.stmts[key]
	if !ok {
		var err error
		if st, err = e.conn.PrepareContext(ctx, q); err != nil {
			return err
		}
		e.stmts[key] = st
	}
	_, err := st.ExecContext(ctx, args...)
	return err
}

// rowSize estimates the bytes row i of table t adds to a statement sent as
// text (strings and payloads may be escaped to twice their length).
func (e *sqlEngine) rowSize(t, i int) int {
	const fixed = 160
	p := &e.p
	switch t {
	case 0:
		r := &p.Readings[i]
		return fixed + 2*(len(r.PboxID)+len(r.Company)+len(r.Site))
	case 1:
		w := &p.Windows[i]
		return fixed + 2*(len(w.PboxID)+len(w.Company)+len(w.Site))
	case 2:
		w := &p.WorkPeriods[i]
		return fixed + 2*(len(w.PboxID)+len(w.Company)+len(w.Site))
	case 3:
		l := &p.Late[i]
		return fixed + 2*(len(l.PboxID)+len(l.Reason)+len(l.Payload))
	default:
		d := &p.DeadLetters[i]
		return fixed + 2*(len(d.Reason)+len(d.Payload))
	}
}

// appendRow appends the column values of row i of table t, in tableDefs
// order.
func (e *sqlEngine) appendRow(args []any, t, i int) []any {
	p := &e.p
	switch t {
	case 0:
		r := &p.Readings[i]
		return append(args, int64(r.Partition), r.Offset, r.PboxID, sqlTime(r.EventTime), r.Metric,
			nullFloat(r.Latitude), nullFloat(r.Longitude), r.Company, r.Site)
	case 1:
		w := &p.Windows[i]
		return append(args, w.PboxID, sqlTime(w.Start), sqlTime(w.End), w.Count, w.Sum, w.Min, w.Max, w.Avg,
			nullFloat(w.Latitude), nullFloat(w.Longitude), w.Company, w.Site)
	case 2:
		w := &p.WorkPeriods[i]
		return append(args, w.PboxID, sqlTime(w.Start), sqlTime(w.End), w.DurationSeconds(), w.Samples,
			w.AvgMetric, w.MaxMetric, w.Company, w.Site)
	case 3:
		l := &p.Late[i]
		return append(args, int64(l.Partition), l.Offset, l.PboxID, sqlTime(l.EventTime), sqlTime(l.Watermark),
			l.Reason, blob(l.Payload), p.lateBytes[i])
	default:
		d := &p.DeadLetters[i]
		return append(args, int64(d.Partition), d.Offset, d.Reason, blob(d.Payload), p.deadBytes[i])
	}
}

// nullFloat is f, or SQL NULL for NaN.
func nullFloat(f float64) any {
	if math.IsNaN(f) {
		return nil
	}
	return f
}

// blob is b as a non-NULL BLOB value (an empty payload is stored as an
// empty BLOB, not NULL).
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
