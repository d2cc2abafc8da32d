package sinks

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// tableDef is one output table as the SQL sinks see it: columns in the order
// of the INSERT statements (without the epoch column, which the fenced
// statements add last), and the conflict key of the upsert.
type tableDef struct {
	name string
	cols []string
	key  []string
}

// epochCol is the column that holds the lease epoch of a row's writer.
const epochCol = "epoch"

// tableDefs are the tables, indexed like sqlTables (tReadings ...).
var tableDefs = [numTables]tableDef{
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
	{TableRejected,
		[]string{"source_table", "pboxid", "start_ms", "reason", "payload", "payload_bytes"},
		[]string{"source_table", "pboxid", "start_ms"}},
}

// dialect is what differs between the SQL stores in the write path.
type dialect struct {
	name    string // sink kind, the metrics label
	maxVars int    // most bound parameters in one statement
	// stmtBytes is the estimated size statements are filled to
	// (MySQL: Config.BatchBytes, capped by max_allowed_packet); a row
	// larger than it goes alone. 0 means no bound.
	stmtBytes int
	quote     func(ident string) string
	// upsert is the clause after VALUES; fenced: rows carry the epoch
	// column and never replace a row of a higher epoch.
	upsert func(t *tableDef, fenced bool) string
	// rowError reports whether err is the store refusing a row's values
	// (a constraint, a value out of range): the flush then bisects the
	// transaction to find the row. Connection errors, deadlocks and
	// timeouts are not row errors: the rows stay buffered for a retry.
	rowError func(err error) bool
	// numbered placeholders: $1, $2 ... (PostgreSQL) instead of ?.
	numbered bool
	// dedupe: a transaction carries at most one row per key of a table
	// (PostgreSQL's ON CONFLICT DO UPDATE cannot affect a row twice in
	// one statement); see dedupeSegs.
	dedupe bool
	// noNUL: text columns cannot hold U+0000 (PostgreSQL); it is stored
	// as U+FFFD.
	noNUL bool
	// msTimes: times are bound as int64 Unix ms (ClickHouse's Int64
	// columns), not as SQL text.
	msTimes bool
	// batches: the store has no transaction across tables and takes an
	// insert as one block of rows (ClickHouse): each table's rows go in
	// their own batch, INSERT (cols) VALUES (?, ...) prepared once in a
	// database/sql transaction and executed once per row (see
	// writeBatches).
	batches bool
	// deadlock, if set, reports whether err is a transaction chosen as a
	// deadlock victim (or a lock wait timeout): a flush over several
	// connections retries such a group once, after the others.
	deadlock func(err error) bool
	// prepared: the upserts of a transaction on the pool (MySQL) are
	// server-side prepared statements, one *sql.Stmt per stmtKey kept in
	// the engine's cache (see execPrepared), run through Tx.StmtContext;
	// database/sql prepares a statement once on each connection that runs
	// it. Otherwise the statement text goes with every execution.
	prepared bool
	// textFallback, if set, reports whether err is the store refusing to
	// prepare a statement (too many prepared statements on the server,
	// no prepared statements through a proxy): the statement is sent as
	// text instead.
	textFallback func(err error) bool
	// staleStmt, if set, reports whether err says a prepared statement is
	// unusable (the server lost it, or asks for it to be prepared again):
	// it leaves the cache, and the transaction fails (its rows are kept
	// for the retry).
	staleStmt func(err error) bool
}

// insertSQL is the multi-row upsert of n rows into t.
func (d *dialect) insertSQL(t *tableDef, n int, fenced bool) string {
	cols := t.cols
	if fenced {
		cols = append(slices.Clip(cols), epochCol)
	}
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(d.quote(t.name))
	b.WriteString(" (")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(d.quote(c))
	}
	b.WriteString(") VALUES ")
	if d.numbered {
		v := 0
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('(')
			for j := range cols {
				if j > 0 {
					b.WriteByte(',')
				}
				v++
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(v))
			}
			b.WriteByte(')')
		}
	} else {
		row := "(?" + strings.Repeat(",?", len(cols)-1) + ")"
		b.Grow(n * (len(row) + 1))
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(row)
		}
	}
	b.WriteByte(' ')
	b.WriteString(d.upsert(t, fenced))
	return b.String()
}

// onConflictUpsert is the upsert clause of SQLite and PostgreSQL:
// ON CONFLICT (key) DO UPDATE SET col = excluded.col ..., and when fenced
// epoch = excluded.epoch WHERE excluded.epoch >= <table>.epoch (the stored
// row's epoch), so a row is never replaced by one of a lower epoch.
func onConflictUpsert(quote func(string) string) func(t *tableDef, fenced bool) string {
	return func(t *tableDef, fenced bool) string {
		var b strings.Builder
		b.WriteString("ON CONFLICT (")
		for i, k := range t.key {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quote(k))
		}
		b.WriteString(") DO UPDATE SET ")
		for i, c := range t.nonKey() {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s = excluded.%s", quote(c), quote(c))
		}
		if fenced {
			fmt.Fprintf(&b, `, "epoch" = excluded."epoch" WHERE excluded."epoch" >= %s."epoch"`, quote(t.name))
		}
		return b.String()
	}
}

// nonKey lists the columns of t outside its key (epoch excluded): the ones
// an upsert sets.
func (t *tableDef) nonKey() []string {
	var out []string
	for _, c := range t.cols {
		if !slices.Contains(t.key, c) {
			out = append(out, c)
		}
	}
	return out
}

type stmtKey struct{ table, rows int }

// maxPreparedStmts bounds the engine's cache of prepared statements on
// the pool (dialect.prepared): the least recently used is closed beyond
// it. A flush uses one shape per table for its full statements and powers
// of two for the rest (execRows), about a dozen shapes per table; the
// server holds each on every connection that ran it (MariaDB and MySQL
// allow max_prepared_stmt_count = 16,382 over all connections by
// default).
const maxPreparedStmts = 64

// pooledStmt is a prepared statement of the cache and when it was last
// used (a tick of sqlEngine.pticks).
type pooledStmt struct {
	st   *sql.Stmt
	used uint64
}

// Lifecycle states of a sqlEngine.
const (
	stateNew = iota
	stateOpen
	stateClosed
)

// partBuf is the buffer of one device partition: cleaned copies of the rows
// it wrote under one lease epoch, not yet committed.
type partBuf struct {
	p     int32
	epoch uint64
	rows  pending
	bytes int64 // rowBytes of rows
	// Guarded by sqlEngine.mu, set while a flush writes the buffer:
	// inflight is how many rows of each table the flush writes (rows
	// appended meanwhile come after them); expired marks a buffer whose
	// lease guard said no.
	inflight [numTables]int
	expired  bool
}

// seg is the rows [lo, hi) of one table of a partition buffer b. rows is
// a copy of b.rows taken under sqlEngine.mu when the flush began (its
// slices' first elements are not touched until the flush ends, while
// writers may append to b.rows meanwhile).
type seg struct {
	b      *partBuf
	rows   *pending
	lo, hi int
}

// selection is what one write transaction carries: for each table, in
// write order, ranges of rows of partition buffers.
type selection [numTables][]seg

func (s *selection) rows() int {
	n := 0
	for t := range s {
		for _, g := range s[t] {
			n += g.hi - g.lo
		}
	}
	return n
}

// split returns the first half of s's rows, in write order (table by
// table, segments in order), and the rest.
func (s *selection) split() (a, b selection) {
	half := s.rows() / 2
	for t := range s {
		for _, g := range s[t] {
			n := g.hi - g.lo
			switch {
			case half >= n:
				a[t] = append(a[t], g)
				half -= n
			case half > 0:
				a[t] = append(a[t], seg{g.b, g.rows, g.lo, g.lo + half})
				b[t] = append(b[t], seg{g.b, g.rows, g.lo + half, g.hi})
				half = 0
			default:
				b[t] = append(b[t], g)
			}
		}
	}
	return a, b
}

// first returns the segment and table of the first row of s (which must
// not be empty).
func (s *selection) first() (g seg, t int) {
	for t := range s {
		for _, g := range s[t] {
			if g.hi > g.lo {
				return g, t
			}
		}
	}
	panic("sinks: empty selection")
}

// rejection is a row the store refused (row g.lo of table t), with its
// error.
type rejection struct {
	g   seg
	t   int
	err error
}

// Reasons of eddy_sink_rows_dropped_total.
const (
	reasonStopped      = "partition_stopped" // Drop: the partition stopped or lost its lease
	reasonLeaseExpired = "lease_expired"     // the lease guard said no before a write
	reasonFenced       = "fenced"            // a newer epoch of the partition wrote, or the write was stale
	reasonUnstorable   = "unstorable"        // the rejection of a rejected row was rejected too
)

// sqlEngine is the write path shared by the SQL sinks. It keeps one buffer
// per device partition (partBuf) and writes every buffer in one transaction
// of multi-row upserts once Config.BatchRows rows are buffered, on flush, or
// when a writer waits for buffer space. Rows leave the buffer only when
// their transaction commits, so a failed write is retried, in the same
// order, by the next flush; a partition's rows are dropped by Drop, by the
// lease guard, or when a newer epoch of the partition writes.
//
// A flush over several connections (Config.Conns, MySQL) splits the
// partition buffers into groups, one transaction each, written in parallel
// (see writeGroups).
//
// Locks: io (a one-slot semaphore, so that waiting for it can respect a
// context) serialises flushes and guards conn, stmts and lanes; qmu
// guards queries (the lanes of a flush share it); mu guards everything
// else and is never held during store I/O. Lock order: io, then mu.
type sqlEngine struct {
	d   dialect
	cfg Config
	m   *metrics
	// stmtRows is the most rows per INSERT statement (Config.BatchRows; a
	// benchmark knob).
	stmtRows int
	// unfenced writes without the epoch column, with unconditional
	// upserts, as eddy did before fencing: a benchmark knob.
	unfenced bool
	// beforeWrite, if set, runs before every flush with the rows about to
	// be written (MySQL creates daily partitions there); io is held.
	beforeWrite func(ctx context.Context, sel *selection)
	// afterFlush, if set, runs after every successful Flush (not after
	// the writes Write starts itself); io is held. SQLite makes the
	// committed rows durable there.
	afterFlush func(ctx context.Context) error

	// conns is how many groups (transactions, connections) one flush
	// writes in parallel at most (Config.Conns; 1 for SQLite).
	conns int

	io      chan struct{}
	conn    *sql.Conn // SQLite: the one connection, with the prepared statements; nil for MySQL
	lanes   []lane    // one per group of a flush
	stmts   map[stmtKey]*sql.Stmt
	qmu     sync.Mutex
	queries map[stmtKey]string
	// pstmts are the prepared statements on the pool (dialect.prepared),
	// at most maxPreparedStmts; guarded by qmu, like pticks, the use
	// counter that orders them.
	pstmts map[stmtKey]*pooledStmt
	pticks uint64

	mu    sync.Mutex
	state int
	db    *sql.DB
	bufs  map[int32]*partBuf
	// maxEpoch is the highest epoch each partition wrote under; kept after
	// Drop, so that a stale writer stays fenced.
	maxEpoch map[int32]uint64
	bytes    int64 // sum of bufs' bytes
	nrows    int   // sum of bufs' rows
	// space is closed (and replaced) whenever bytes shrink or the state
	// changes: writers waiting for buffer space wait on it.
	space        chan struct{}
	guard        func(p int32, epoch uint64) bool
	backpressure func(p int32, waiting bool)
}

func newSQLEngine(d dialect, cfg Config, m *metrics) *sqlEngine {
	return &sqlEngine{
		d:        d,
		cfg:      cfg,
		m:        m,
		stmtRows: cfg.BatchRows,
		conns:    1,
		io:       make(chan struct{}, 1),
		queries:  map[stmtKey]string{},
		stmts:    map[stmtKey]*sql.Stmt{},
		pstmts:   map[stmtKey]*pooledStmt{},
		bufs:     map[int32]*partBuf{},
		maxEpoch: map[int32]uint64{},
		space:    make(chan struct{}),
	}
}

// open runs setup (which creates the schema and returns the database
// handle) unless the engine is open already.
func (e *sqlEngine) open(ctx context.Context, setup func(ctx context.Context) (*sql.DB, error)) error {
	if err := e.acquire(ctx); err != nil {
		return err
	}
	defer e.release()
	e.mu.Lock()
	st := e.state
	e.mu.Unlock()
	switch st {
	case stateOpen:
		return nil
	case stateClosed:
		return ErrClosed
	}
	db, err := setup(ctx)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.db = db
	e.state = stateOpen
	e.mu.Unlock()
	return nil
}

// usable reports ErrNotOpen or ErrClosed; mu is held.
func (e *sqlEngine) usable() error {
	switch e.state {
	case stateNew:
		return ErrNotOpen
	case stateClosed:
		return ErrClosed
	}
	return nil
}

// signal wakes the writers waiting for buffer space; mu is held.
func (e *sqlEngine) signal() {
	close(e.space)
	e.space = make(chan struct{})
}

// acquire takes the io semaphore, or returns ctx's error.
func (e *sqlEngine) acquire(ctx context.Context) error {
	select {
	case e.io <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *sqlEngine) release() { <-e.io }

// A writer waiting for buffer space tries to write the buffer itself; after
// a failed write it waits minWaitBackoff doubling to maxWaitBackoff (±20 %
// jitter) before it tries again, or less if space is freed meanwhile.
const (
	minWaitBackoff = 50 * time.Millisecond
	maxWaitBackoff = 2 * time.Second
)

// write buffers b as written by partition p under epoch (see
// EpochWriter.WriteEpoch).
func (e *sqlEngine) write(ctx context.Context, p int32, epoch uint64, b *Batch) error {
	if epoch > math.MaxInt64 {
		return fmt.Errorf("sinks: %s: lease epoch %d of partition %d exceeds the storable %d", e.d.name, epoch, p, int64(math.MaxInt64))
	}
	e.mu.Lock()
	if err := e.usable(); err != nil {
		e.mu.Unlock()
		return err
	}
	if b.Len() == 0 {
		e.mu.Unlock()
		return nil
	}
	stale := func() error {
		if hi, ok := e.maxEpoch[p]; ok && epoch < hi {
			e.m.dropped(reasonFenced, b.Len())
			return fmt.Errorf("%w: partition %d wrote under epoch %d to %s, which has rows of epoch %d", ErrStaleEpoch, p, epoch, e.d.name, hi)
		}
		return nil
	}
	if err := stale(); err != nil {
		e.mu.Unlock()
		return err
	}
	if err := e.waitSpace(ctx, p, batchBytes(b, e.cfg.MaxPayloadBytes)); err != nil {
		e.mu.Unlock()
		return err
	}
	if err := stale(); err != nil { // a newer epoch wrote while this one waited
		e.mu.Unlock()
		return err
	}
	e.maxEpoch[p] = epoch
	buf := e.bufs[p]
	if buf != nil && buf.epoch < epoch {
		// A newer owner of the partition on this node: the older one's
		// rows must never be written.
		e.dropLocked(buf, reasonFenced)
		buf = nil
	}
	if buf == nil {
		buf = &partBuf{p: p, epoch: epoch}
		e.bufs[p] = buf
	}
	var lens [numTables]int
	for t := range numTables {
		lens[t] = buf.rows.len(t)
	}
	rej := buf.rows.add(b, e.cfg.MaxPayloadBytes)
	var added int64
	rows := 0
	for t := range numTables {
		for i := lens[t]; i < buf.rows.len(t); i++ {
			added += buf.rows.rowBytes(t, i)
			rows++
		}
	}
	buf.bytes += added
	e.bytes += added
	e.nrows += rows
	e.m.bufferBytes.Add(float64(added))
	full := e.nrows >= e.cfg.BatchRows
	e.mu.Unlock()
	e.m.rejectedRows(&rej)
	if full {
		// Write now unless another flush is writing (it or the next one
		// takes these rows). A failure keeps the rows buffered; it is
		// counted, and the next flush retries.
		select {
		case e.io <- struct{}{}:
			_ = e.flushIO(ctx)
			e.release()
		default:
		}
	}
	return nil
}

// maxPendingBatches bounds the rows a sink buffers to this many
// Config.BatchRows besides the byte limit: when the store is slower than the
// partitions, they wait for it (backpressure) instead of running ahead of
// it by up to MaxBufferBytes, which would make every checkpoint's flush and
// every row's visibility wait for that whole buffer (a 500 ms checkpoint
// took 5.3 s into MariaDB without it). Measured on eddy dev --bounded into
// SQLite (median of 3): unbounded rows 133k records/s, 16 batches 111k, 4
// batches 107k — the throughput bought by a deeper buffer is paid in
// checkpoint duration and latency.
const maxPendingBatches = 16

// full reports whether need more bytes do not fit into the buffer: the
// buffer is not empty (an empty one takes any batch) and holds
// maxPendingBatches × BatchRows rows, or need would pass MaxBufferBytes.
// mu is held.
func (e *sqlEngine) full(need int64) bool {
	return e.bytes > 0 && (e.bytes+need > e.cfg.MaxBufferBytes || e.nrows >= maxPendingBatches*e.cfg.BatchRows)
}

// waitSpace returns once need more bytes fit into the buffer (see full),
// writing the buffer itself meanwhile. mu is held on entry and on return;
// it is released while waiting.
func (e *sqlEngine) waitSpace(ctx context.Context, p int32, need int64) error {
	if !e.full(need) {
		return nil
	}
	hook := e.backpressure
	if hook != nil {
		e.mu.Unlock()
		hook(p, true)
		e.mu.Lock()
	}
	err := e.waitLoop(ctx, p, need)
	if hook != nil {
		e.mu.Unlock()
		hook(p, false)
		e.mu.Lock()
	}
	return err
}

// waitLoop is waitSpace's loop; mu is held on entry and on return.
func (e *sqlEngine) waitLoop(ctx context.Context, p int32, need int64) error {
	limit := e.cfg.MaxBufferBytes
	b := backoff.ExponentialBackOff{InitialInterval: minWaitBackoff, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: maxWaitBackoff}
	var lastErr error
	for e.full(need) {
		space := e.space
		e.mu.Unlock()
		var err error
		select {
		case e.io <- struct{}{}:
			err = e.flushIO(ctx)
			e.release()
			if err != nil && ctx.Err() == nil {
				lastErr = err
				timer := time.NewTimer(b.NextBackOff())
				select {
				case <-space:
				case <-timer.C:
				case <-ctx.Done():
				}
				timer.Stop()
			}
		case <-space:
		case <-ctx.Done():
		}
		e.mu.Lock()
		if err := e.usable(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			if lastErr != nil {
				return fmt.Errorf("sinks: %s: partition %d waited for buffer space (%d of %d bytes buffered): %w; last write error: %v",
					e.d.name, p, e.bytes, limit, ctx.Err(), lastErr)
			}
			return fmt.Errorf("sinks: %s: partition %d waited for buffer space (%d of %d bytes buffered): %w", e.d.name, p, e.bytes, limit, ctx.Err())
		}
	}
	return nil
}

// drop discards the buffered rows of partition p (EpochWriter.Drop).
func (e *sqlEngine) drop(p int32) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	buf := e.bufs[p]
	if buf == nil {
		return 0
	}
	return e.dropLocked(buf, reasonStopped)
}

// dropLocked discards buf and every row in it; mu is held. A flush that is
// writing the buffer still commits the rows it took.
func (e *sqlEngine) dropLocked(buf *partBuf, reason string) int {
	n := buf.rows.rows()
	delete(e.bufs, buf.p)
	e.bytes -= buf.bytes
	e.nrows -= n
	e.m.bufferBytes.Sub(float64(buf.bytes))
	e.m.dropped(reason, n)
	e.signal()
	return n
}

func (e *sqlEngine) setGuard(valid func(p int32, epoch uint64) bool) {
	e.mu.Lock()
	e.guard = valid
	e.mu.Unlock()
}

func (e *sqlEngine) setBackpressure(fn func(p int32, waiting bool)) {
	e.mu.Lock()
	e.backpressure = fn
	e.mu.Unlock()
}

func (e *sqlEngine) flush(ctx context.Context) error {
	if err := e.acquire(ctx); err != nil {
		return fmt.Errorf("sinks: %s: flush: %w", e.d.name, err)
	}
	defer e.release()
	if err := e.flushIO(ctx); err != nil {
		return err
	}
	if e.afterFlush != nil {
		return e.afterFlush(ctx)
	}
	return nil
}

// lane is the scratch state of one connection of a flush: the argument
// slice its statements reuse, and the statement shapes its transaction
// ran without a cached prepared statement (dialect.prepared), to prepare
// on the pool once it has ended.
type lane struct {
	args   []any
	unprep []stmtKey
}

// group is the share of one connection of a flush: the rows of some
// tables of some partition buffers (units), written in one transaction.
type group struct {
	units []unit
	sel   selection
	err   error
}

// unit is the rows of table t of partition buffer b that a flush writes.
// The units of one table stay in one group, in partition order: rows of a
// key must be written in order (a re-fired window replaces the earlier
// one; of equal epochs, the later partition's row wins), and only rows of
// one table share keys.
type unit struct {
	b    *partBuf
	t    int
	rows int
}

// flushIO writes every buffered row, io held: the tables are split into
// up to e.conns groups (groupUnits), each
// written in one transaction, bisected when the store refuses a row
// (writeSel); the groups are written in parallel. The rows of a group that
// succeeds leave their buffers; those of a group that fails stay.
func (e *sqlEngine) flushIO(ctx context.Context) error {
	e.mu.Lock()
	if err := e.usable(); err != nil {
		e.mu.Unlock()
		return err
	}
	flushing := make([]*partBuf, 0, len(e.bufs))
	for _, b := range e.bufs {
		if b.rows.rows() > 0 {
			flushing = append(flushing, b)
		}
	}
	slices.SortFunc(flushing, func(x, y *partBuf) int { return int(x.p) - int(y.p) })
	snaps := make(map[*partBuf]*pending, len(flushing))
	var units []unit
	for t := range numTables {
		for _, b := range flushing {
			n := b.rows.len(t)
			b.inflight[t] = n
			if n > 0 {
				units = append(units, unit{b, t, n})
			}
		}
	}
	for _, b := range flushing {
		snap := b.rows
		snaps[b] = &snap
	}
	groups := e.groupUnits(units)
	for gi := range groups {
		g := &groups[gi]
		for _, u := range g.units {
			g.sel[u.t] = append(g.sel[u.t], seg{u.b, snaps[u.b], 0, u.rows})
		}
	}
	e.mu.Unlock()
	n := 0
	for _, u := range units {
		n += u.rows
	}
	if n == 0 {
		return nil
	}
	start := time.Now()
	if e.beforeWrite != nil {
		for gi := range groups {
			e.beforeWrite(ctx, &groups[gi].sel)
		}
	}
	e.writeGroups(ctx, groups)
	var err error
	failed := 0
	for gi := range groups {
		g := &groups[gi]
		if g.err == nil {
			continue
		}
		err = errors.Join(err, g.err)
		for _, u := range g.units {
			failed += u.rows
		}
	}
	if err != nil && e.conn != nil && errors.Is(err, sql.ErrConnDone) {
		// database/sql gave up the SQLite connection (e.g. after a
		// cancelled context): take a fresh one for the retry.
		if cerr := e.renewConn(ctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	e.mu.Lock()
	for gi := range groups {
		if g := &groups[gi]; g.err != nil {
			for _, u := range g.units {
				u.b.inflight[u.t] = 0 // kept for the retry
			}
		}
	}
	freed := false
	for _, b := range flushing {
		switch {
		case e.bufs[b.p] != b: // dropped meanwhile; accounted then
		case b.expired:
			e.dropLocked(b, reasonLeaseExpired)
		default:
			nb := b.rows.removeFront(&b.inflight)
			for _, k := range b.inflight {
				e.nrows -= k
				freed = freed || k > 0
			}
			b.bytes -= nb
			e.bytes -= nb
			e.m.bufferBytes.Sub(float64(nb))
		}
		b.inflight = [numTables]int{}
	}
	if freed {
		e.signal()
	}
	e.mu.Unlock()
	if err != nil {
		e.m.writeErrors.Inc()
		return fmt.Errorf("sinks: %s: write %d of %d rows (kept for retry): %w", e.d.name, failed, n, err)
	}
	e.m.observeFlush(start)
	return nil
}

// groupUnits splits units (sorted by table, then partition) into up to
// e.conns groups by table: every unit of a table in the same group, the
// table with the most rows first to the group with the fewest; each
// group's units stay in that order.
func (e *sqlEngine) groupUnits(units []unit) []group {
	var rows [numTables]int
	var tables []int
	for _, u := range units {
		if rows[u.t] == 0 {
			tables = append(tables, u.t)
		}
		rows[u.t] += u.rows
	}
	k := min(e.conns, len(tables))
	if k <= 1 {
		return []group{{units: units}}
	}
	slices.SortStableFunc(tables, func(x, y int) int { return rows[y] - rows[x] })
	load := make([]int, k)
	var of [numTables]int
	for _, t := range tables {
		gi := 0
		for j := range load {
			if load[j] < load[gi] {
				gi = j
			}
		}
		load[gi] += rows[t]
		of[t] = gi
	}
	groups := make([]group, k)
	for _, u := range units {
		g := &groups[of[u.t]]
		g.units = append(g.units, u)
	}
	return groups
}

// writeGroups writes every group in its own transaction, in parallel, on
// its own lane (and so connection), setting each group's err; io is held.
// A group that failed as a deadlock victim is written again, once, after
// the others have ended. Then the replacements of the rows the store
// refused are written, group after group, as a flush over one connection
// writes them after all the tables (rejected_rows is a table of its own).
func (e *sqlEngine) writeGroups(ctx context.Context, groups []group) {
	for len(e.lanes) < len(groups) {
		e.lanes = append(e.lanes, lane{})
	}
	rejs := make([][]rejection, len(groups))
	write := func(gi int) {
		rejs[gi] = rejs[gi][:0]
		groups[gi].err = e.writeSel(ctx, &e.lanes[gi], groups[gi].sel, &rejs[gi])
	}
	if len(groups) == 1 {
		write(0)
	} else {
		var wg sync.WaitGroup
		for gi := range groups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				write(gi)
			}()
		}
		wg.Wait()
		for gi := range groups {
			if err := groups[gi].err; err != nil && e.d.deadlock != nil && e.d.deadlock(err) && ctx.Err() == nil {
				write(gi)
			}
		}
	}
	for gi := range groups {
		if groups[gi].err == nil && len(rejs[gi]) > 0 {
			groups[gi].err = e.writeRejections(ctx, &e.lanes[0], rejs[gi])
		}
	}
	for i := range e.lanes {
		clear(e.lanes[i].args[:cap(e.lanes[i].args)]) // drop references to row strings and payloads
	}
}

// liveLocked returns sel without the rows of partitions whose lease guard
// says no (marking their buffers expired); mu is held.
func (e *sqlEngine) liveLocked(sel selection) selection {
	var out selection
	for t := range sel {
		for _, g := range sel[t] {
			b := g.b
			if !b.expired && b.p != NoPartition && e.guard != nil && !e.guard(b.p, b.epoch) {
				b.expired = true
			}
			if !b.expired {
				out[t] = append(out[t], g)
			}
		}
	}
	return out
}

// writeSel writes sel in one transaction, after asking the lease guard.
// When the store refuses a row (dialect.rowError), it bisects: each half is
// written (and bisected) on its own, in order, until the refused rows are
// single; they are appended to rej. Any other error ends it.
func (e *sqlEngine) writeSel(ctx context.Context, ln *lane, sel selection, rej *[]rejection) error {
	e.mu.Lock()
	sel = e.liveLocked(sel)
	e.mu.Unlock()
	n := sel.rows()
	if n == 0 {
		return nil
	}
	err := e.writeTx(ctx, ln, &sel)
	if err == nil {
		e.m.writtenSel(&sel)
		return nil
	}
	if ctx.Err() != nil || !e.d.rowError(err) {
		return err
	}
	if n == 1 {
		g, t := sel.first()
		*rej = append(*rej, rejection{g, t, err})
		return nil
	}
	a, b := sel.split()
	if err := e.writeSel(ctx, ln, a, rej); err != nil {
		return err
	}
	return e.writeSel(ctx, ln, b, rej)
}

// writeRejections writes what replaces the rows the store refused (see
// ReasonSinkRejected), under each row's partition and epoch. A
// replacement the store refuses too is dropped and counted.
func (e *sqlEngine) writeRejections(ctx context.Context, ln *lane, rej []rejection) error {
	tmp := map[*partBuf]*partBuf{}
	var order []*partBuf
	var counts [numTables]int
	for _, r := range rej {
		nb := tmp[r.g.b]
		if nb == nil {
			nb = &partBuf{p: r.g.b.p, epoch: r.g.b.epoch}
			tmp[r.g.b] = nb
			order = append(order, nb)
		}
		why := r.err.Error()
		src, i := r.g.rows, r.g.lo
		switch r.t {
		case tReadings:
			nb.rows.rejectReading(&src.Readings[i], why, e.cfg.MaxPayloadBytes)
		case tWindows:
			nb.rows.rejectWindow(&src.Windows[i], why, e.cfg.MaxPayloadBytes)
		case tWorkPeriods:
			nb.rows.rejectWorkPeriod(&src.WorkPeriods[i], why, e.cfg.MaxPayloadBytes)
		case tLate:
			nb.rows.rejectLate(&src.Late[i], src.lateBytes[i], why)
		case tDeadLetters:
			nb.rows.rejectDeadLetter(&src.DeadLetters[i], src.deadBytes[i], why)
		default: // a rejection refused: nothing is left to store
			e.m.dropped(reasonUnstorable, 1)
			continue
		}
		counts[r.t]++
	}
	e.m.rejectedRows(&counts)
	var sel selection
	for t := range numTables {
		for _, b := range order {
			if n := b.rows.len(t); n > 0 {
				sel[t] = append(sel[t], seg{b, &b.rows, 0, n})
			}
		}
	}
	var again []rejection
	if err := e.writeSel(ctx, ln, sel, &again); err != nil {
		return err
	}
	e.m.dropped(reasonUnstorable, len(again))
	return nil
}

// close writes what is buffered (bounded by timeout), then releases the
// database. The rows are dropped if that write fails; the error says so.
func (e *sqlEngine) close(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	held := e.acquire(ctx) == nil
	if held {
		defer e.release()
	}
	e.mu.Lock()
	st := e.state
	n := e.nrows
	e.mu.Unlock()
	if st == stateClosed {
		return nil
	}
	var err error
	if st == stateOpen {
		if !held {
			err = fmt.Errorf("sinks: %s: close dropped %d unwritten rows: a write did not end within %s", e.d.name, n, timeout)
		} else {
			if n > 0 {
				if werr := e.flushIO(ctx); werr != nil {
					err = fmt.Errorf("sinks: %s: close dropped %d unwritten rows: %w", e.d.name, n, werr)
				}
			}
			for _, s := range e.stmts {
				s.Close()
			}
			e.qmu.Lock()
			for k, ps := range e.pstmts {
				ps.st.Close()
				delete(e.pstmts, k)
			}
			e.qmu.Unlock()
			if e.conn != nil {
				e.conn.Close()
			}
		}
	}
	e.mu.Lock()
	e.state = stateClosed
	e.m.bufferBytes.Sub(float64(e.bytes))
	e.bufs, e.bytes, e.nrows = map[int32]*partBuf{}, 0, 0
	e.signal()
	db := e.db
	e.mu.Unlock()
	if db != nil {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("sinks: %s: close: %w", e.d.name, cerr)
		}
	}
	return err
}

// writeTx writes sel in one transaction; io is held.
func (e *sqlEngine) writeTx(ctx context.Context, ln *lane, sel *selection) error {
	if e.d.batches {
		return e.writeBatches(ctx, ln, sel)
	}
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
		e.mu.Lock()
		db := e.db
		e.mu.Unlock()
		var err error
		if tx, err = db.BeginTx(ctx, nil); err != nil {
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
	for t := range numTables {
		if len(sel[t]) == 0 {
			continue
		}
		if err := e.execRows(ctx, ln, tx, t, sel[t]); err != nil {
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
	if len(ln.unprep) > 0 && err == nil {
		e.preparePending(ctx, ln)
	}
	return err
}

// writeBatches writes sel as one batch per table, in table order (see
// dialect.batches); io is held. A batch is atomic in the store, the tables
// together are not: after an error, the tables written before it stay
// written, and the retry of the whole selection writes them again (which
// the store collapses by key).
func (e *sqlEngine) writeBatches(ctx context.Context, ln *lane, sel *selection) error {
	e.mu.Lock()
	db := e.db
	e.mu.Unlock()
	for t := range numTables {
		segs := sel[t]
		if len(segs) == 0 {
			continue
		}
		if e.d.dedupe {
			if segs = e.dedupeSegs(t, segs); len(segs) == 0 {
				continue
			}
		}
		if err := e.writeBatch(ctx, ln, db, t, segs); err != nil {
			return fmt.Errorf("%s: %w", tableDefs[t].name, err)
		}
	}
	return nil
}

// writeBatch writes the rows of table t in segs as one batch, on a
// connection of its own that is discarded after any error: a server that
// refused a block may still be reading the rest of it, and the connection
// is out of step with it.
func (e *sqlEngine) writeBatch(ctx context.Context, ln *lane, db *sql.DB, t int, segs []seg) (err error) {
	key := stmtKey{t, 1}
	e.qmu.Lock()
	q, ok := e.queries[key]
	if !ok {
		q = e.d.insertSQL(&tableDefs[t], 1, !e.unfenced)
		e.queries[key] = q
	}
	e.qmu.Unlock()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	st, err := tx.PrepareContext(ctx, q)
	if err != nil {
		tx.Rollback()
		return err
	}
	defer st.Close()
	for _, g := range segs {
		for i := g.lo; i < g.hi; i++ {
			ln.args = e.appendRow(ln.args[:0], t, g.rows, g.b.epoch, i)
			if _, err := st.ExecContext(ctx, ln.args...); err != nil {
				tx.Rollback()
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil { // the driver's Commit does not watch ctx
		tx.Rollback()
		return err
	}
	return tx.Commit()
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
	cols := len(tableDefs[t].cols)
	if !e.unfenced {
		cols++
	}
	return max(1, min(e.stmtRows, e.d.maxVars/cols))
}

// cursor walks the rows of a list of segments.
type cursor struct {
	segs  []seg
	si, i int
}

func (c *cursor) seg() *seg { return &c.segs[c.si] }

func (c *cursor) next() {
	c.i++
	if c.i >= c.segs[c.si].hi {
		c.si++
		if c.si < len(c.segs) {
			c.i = c.segs[c.si].lo
		}
	}
}

// execRows inserts the rows of table t in segs: full statements of maxRows
// rows, then the rest in statements whose row counts are powers of two, so
// that a handful of statement shapes per table is prepared and cached.
// With a statement size bound, statements carry fewer rows when their
// payloads are large.
func (e *sqlEngine) execRows(ctx context.Context, ln *lane, tx *sql.Tx, t int, segs []seg) error {
	if e.d.dedupe {
		if segs = e.dedupeSegs(t, segs); len(segs) == 0 {
			return nil
		}
	}
	n := 0
	for _, g := range segs {
		n += g.hi - g.lo
	}
	full := e.maxRows(t)
	c := cursor{segs: segs, i: segs[0].lo}
	for done := 0; done < n; {
		k := min(full, n-done)
		if e.d.stmtBytes > 0 {
			size, fit := 0, 0
			cc := c
			for fit < k {
				s := e.rowSize(t, cc.seg().rows, cc.i)
				if fit > 0 && size+s > e.d.stmtBytes {
					break
				}
				size += s
				fit++
				cc.next()
			}
			k = fit
		}
		if k != full {
			k = 1 << (bits.Len(uint(k)) - 1)
		}
		args := ln.args[:0]
		for range k {
			g := c.seg()
			args = e.appendRow(args, t, g.rows, g.b.epoch, c.i)
			c.next()
		}
		ln.args = args
		if err := e.exec(ctx, ln, tx, stmtKey{t, k}, args); err != nil {
			return err
		}
		done += k
	}
	return nil
}

func (e *sqlEngine) exec(ctx context.Context, ln *lane, tx *sql.Tx, key stmtKey, args []any) error {
	e.qmu.Lock()
	q, ok := e.queries[key]
	if !ok {
		q = e.d.insertSQL(&tableDefs[key.table], key.rows, !e.unfenced)
		e.queries[key] = q
	}
	e.qmu.Unlock()
	if tx != nil {
		if e.d.prepared {
			return e.execPrepared(ctx, ln, tx, key, q, args)
		}
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

// execPrepared runs the statement q of key in tx as the prepared
// statement of the cache (see dialect.prepared). Without one it prepares q
// on tx's connection for this execution only and notes key in ln: the
// transaction cannot hold a statement of the pool without preparing it on
// a second connection (database/sql's DB.Prepare takes an idle one), so
// preparePending prepares it once the transaction has ended, on the
// connection the next transaction takes. When the store refuses to
// prepare (dialect.textFallback), q is sent as text.
func (e *sqlEngine) execPrepared(ctx context.Context, ln *lane, tx *sql.Tx, key stmtKey, q string, args []any) error {
	e.qmu.Lock()
	e.pticks++
	ps := e.pstmts[key]
	if ps != nil {
		ps.used = e.pticks
	}
	e.qmu.Unlock()
	var ts *sql.Stmt
	if ps != nil {
		ts = tx.StmtContext(ctx, ps.st) // prepares on tx's connection unless done before
	} else {
		var err error
		if ts, err = tx.PrepareContext(ctx, q); err != nil {
			if e.d.textFallback != nil && e.d.textFallback(err) {
				_, err = tx.ExecContext(ctx, q, args...)
			}
			return err
		}
		if !slices.Contains(ln.unprep, key) {
			ln.unprep = append(ln.unprep, key)
		}
	}
	_, err := ts.ExecContext(ctx, args...)
	ts.Close()
	if err == nil {
		return nil
	}
	if ps != nil && e.d.staleStmt != nil && e.d.staleStmt(err) {
		e.evictStmt(key, ps.st)
	}
	if e.d.textFallback != nil && e.d.textFallback(err) { // StmtContext could not prepare
		_, err = tx.ExecContext(ctx, q, args...)
	}
	return err
}

// preparePending prepares on the pool the statements ln's transactions ran
// without a cached one (see execPrepared), and caches them, closing the
// least recently used statement beyond maxPreparedStmts. A statement that
// fails to prepare is left out (its next transaction prepares it for
// itself again). Safe for concurrent use (the lanes of a flush).
func (e *sqlEngine) preparePending(ctx context.Context, ln *lane) {
	e.mu.Lock()
	db := e.db
	e.mu.Unlock()
	for _, key := range ln.unprep {
		e.qmu.Lock()
		_, ok := e.pstmts[key]
		q := e.queries[key]
		e.qmu.Unlock()
		if ok {
			continue
		}
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		e.qmu.Lock()
		if _, ok := e.pstmts[key]; ok { // another lane prepared it meanwhile
			e.qmu.Unlock()
			st.Close()
			continue
		}
		e.pticks++
		e.pstmts[key] = &pooledStmt{st, e.pticks}
		if len(e.pstmts) > maxPreparedStmts {
			var oldest stmtKey
			var at uint64 = math.MaxUint64
			for k, ps := range e.pstmts {
				if ps.used < at {
					oldest, at = k, ps.used
				}
			}
			// A transaction running it keeps it prepared on its
			// connection until its own statement closes (database/sql's
			// dependencies).
			e.pstmts[oldest].st.Close()
			delete(e.pstmts, oldest)
		}
		e.qmu.Unlock()
	}
	ln.unprep = ln.unprep[:0]
}

// evictStmt closes st and removes it from the cache if it is still the
// statement of key.
func (e *sqlEngine) evictStmt(key stmtKey, st *sql.Stmt) {
	e.qmu.Lock()
	defer e.qmu.Unlock()
	if ps, ok := e.pstmts[key]; ok && ps.st == st {
		delete(e.pstmts, key)
	}
	st.Close()
}

// rowKey is the conflict key of a row (tableDef.key): the strings and
// integers of its key columns, unused ones zero.
type rowKey struct {
	s1, s2  string
	a, b, c int64
}

// key returns the conflict key of row i of table t of p, its strings as
// the store holds them (text).
func (e *sqlEngine) key(t int, p *pending, i int) rowKey {
	switch t {
	case tReadings:
		r := &p.Readings[i]
		return rowKey{a: r.EventTime, b: int64(r.Partition), c: r.Offset}
	case tWindows:
		return rowKey{s1: e.text(p.Windows[i].PboxID), a: p.Windows[i].Start}
	case tWorkPeriods:
		return rowKey{s1: e.text(p.WorkPeriods[i].PboxID), a: p.WorkPeriods[i].Start}
	case tLate:
		return rowKey{b: int64(p.Late[i].Partition), c: p.Late[i].Offset}
	case tDeadLetters:
		return rowKey{b: int64(p.DeadLetters[i].Partition), c: p.DeadLetters[i].Offset}
	}
	r := &p.Rejected[i]
	return rowKey{s1: e.text(r.Table), s2: e.text(r.PboxID), a: r.StartMs}
}

// dedupeSegs returns segs with one row per key: the last row of the
// highest epoch of the key (the last row when unfenced). Applying the rows
// one after the other, as MySQL and SQLite do within a multi-row upsert,
// leaves that row (or the stored one, when it has a higher epoch still):
// earlier rows are replaced by it, later ones of lower epochs are fenced.
// So the transaction's outcome does not change; the other rows are not
// sent (nor checked by the store). A replayed row or a re-fired window
// buffered twice before a flush is the usual case.
func (e *sqlEngine) dedupeSegs(t int, segs []seg) []seg {
	n := 0
	for _, g := range segs {
		n += g.hi - g.lo
	}
	if n < 2 {
		return segs
	}
	// Walk backwards: the first row met of a key is its last; a row met
	// later replaces the kept one only with a strictly higher epoch.
	type kept struct {
		epoch uint64
		j     int
	}
	seen := make(map[rowKey]kept, n)
	drop := make([]bool, n)
	dropped := 0
	j := n
	for si := len(segs) - 1; si >= 0; si-- {
		g := segs[si]
		for i := g.hi - 1; i >= g.lo; i-- {
			j--
			k := e.key(t, g.rows, i)
			old, ok := seen[k]
			switch {
			case !ok:
			case e.unfenced || old.epoch >= g.b.epoch:
				drop[j] = true
				dropped++
				continue
			default:
				drop[old.j] = true
				dropped++
			}
			seen[k] = kept{g.b.epoch, j}
		}
	}
	if dropped == 0 {
		return segs
	}
	out := make([]seg, 0, len(segs)+dropped)
	j = 0
	for _, g := range segs {
		lo := g.lo
		for i := g.lo; i < g.hi; i++ {
			if drop[j] {
				if i > lo {
					out = append(out, seg{g.b, g.rows, lo, i})
				}
				lo = i + 1
			}
			j++
		}
		if g.hi > lo {
			out = append(out, seg{g.b, g.rows, lo, g.hi})
		}
	}
	return out
}

// text is s as a text column of the store holds it (see dialect.noNUL).
func (e *sqlEngine) text(s string) string {
	if e.d.noNUL && strings.IndexByte(s, 0) >= 0 {
		return strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}

// rowSize estimates the bytes row i of table t of p adds to a statement
// sent as text (strings and payloads may be escaped to twice their length).
func (e *sqlEngine) rowSize(t int, p *pending, i int) int {
	const fixed = 180
	switch t {
	case tReadings:
		r := &p.Readings[i]
		return fixed + 2*(len(r.PboxID)+len(r.Company)+len(r.Site))
	case tWindows:
		w := &p.Windows[i]
		return fixed + 2*(len(w.PboxID)+len(w.Company)+len(w.Site))
	case tWorkPeriods:
		w := &p.WorkPeriods[i]
		return fixed + 2*(len(w.PboxID)+len(w.Company)+len(w.Site))
	case tLate:
		l := &p.Late[i]
		return fixed + 2*(len(l.PboxID)+len(l.Reason)+len(l.Payload))
	case tDeadLetters:
		d := &p.DeadLetters[i]
		return fixed + 2*(len(d.Reason)+len(d.Payload))
	}
	r := &p.Rejected[i]
	return fixed + 2*(len(r.Table)+len(r.PboxID)+len(r.Reason)+len(r.Payload))
}

// appendRow appends the column values of row i of table t of p, in
// tableDefs order, then (fenced) epoch.
func (e *sqlEngine) appendRow(args []any, t int, p *pending, epoch uint64, i int) []any {
	tx := e.text
	sqlTime := sqlTimeArg
	if e.d.msTimes {
		sqlTime = msTimeArg
	}
	switch t {
	case tReadings:
		r := &p.Readings[i]
		args = append(args, int64(r.Partition), r.Offset, tx(r.PboxID), sqlTime(r.EventTime), r.Metric,
			nullFloat(r.Latitude), nullFloat(r.Longitude), tx(r.Company), tx(r.Site))
	case tWindows:
		w := &p.Windows[i]
		args = append(args, tx(w.PboxID), sqlTime(w.Start), sqlTime(w.End), w.Count, w.Sum, w.Min, w.Max, w.Avg,
			nullFloat(w.Latitude), nullFloat(w.Longitude), tx(w.Company), tx(w.Site))
	case tWorkPeriods:
		w := &p.WorkPeriods[i]
		args = append(args, tx(w.PboxID), sqlTime(w.Start), sqlTime(w.End), w.DurationSeconds(), w.Samples,
			w.AvgMetric, w.MaxMetric, tx(w.Company), tx(w.Site))
	case tLate:
		l := &p.Late[i]
		args = append(args, int64(l.Partition), l.Offset, tx(l.PboxID), sqlTime(l.EventTime), sqlTime(l.Watermark),
			tx(l.Reason), blob(l.Payload), p.lateBytes[i])
	case tDeadLetters:
		d := &p.DeadLetters[i]
		args = append(args, int64(d.Partition), d.Offset, tx(d.Reason), blob(d.Payload), p.deadBytes[i])
	default:
		r := &p.Rejected[i]
		args = append(args, tx(r.Table), tx(r.PboxID), r.StartMs, tx(r.Reason), blob(r.Payload), int64(len(r.Payload)))
	}
	if !e.unfenced {
		args = append(args, int64(epoch))
	}
	return args
}

// sqlTimeArg is ms as SQL text; msTimeArg is ms itself (dialect.msTimes).
func sqlTimeArg(ms int64) any { return sqlTime(ms) }
func msTimeArg(ms int64) any  { return ms }

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

// sqliteRowError reports whether err is SQLite refusing a row's values: a
// constraint (NOT NULL, CHECK, a trigger's RAISE, a STRICT column's type),
// a datatype mismatch or a value too big.
func sqliteRowError(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG:
		return true
	}
	return false
}
