package sinks

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite" // driver "sqlite"
)

// SQLite is the embedded default sink: one SQLite database file (pure Go
// driver modernc.org/sqlite, driver name "sqlite") holding the five tables
// and the view daily_work_time.
//
// The file is in WAL mode with synchronous=NORMAL: other processes may read
// it while eddy writes, and a committed transaction survives a crash of
// eddy. Flush also makes every committed row durable against a power loss
// or an OS crash (it fsyncs the WAL file, see sync), so the rows of a
// checkpoint's flush are on disk before the checkpoint completes; the
// writes Write starts itself are not fsynced, and a power loss may undo
// those committed after the last Flush (the job replays them from its last
// checkpoint). One connection does all writes (SQLite has one writer).
//
// Times are TEXT "YYYY-MM-DD HH:MM:SS.sss" in UTC (always three fraction
// digits, so text order is time order); absent coordinates are NULL;
// payloads are BLOBs. Tables are STRICT.
//
// Write and Flush are safe for concurrent use; they serialise on one mutex
// that is held while writing.
type SQLite struct {
	path string
	e    *sqlEngine
	// Guarded by e.io: the connection and its total_changes() at the
	// last sync (see sync), and how many syncs fsynced the WAL.
	syncedConn    *sql.Conn
	syncedChanges int64
	syncs         int
}

var (
	_ Sink        = (*SQLite)(nil)
	_ EpochWriter = (*SQLite)(nil)
)

// sqliteMaxVars is SQLite's default SQLITE_MAX_VARIABLE_NUMBER.
const sqliteMaxVars = 32766

// NewSQLite returns a sink writing to the SQLite database file path
// (created with its tables by Open if missing). It returns an error if cfg
// is invalid or path is empty or contains '?'. reg receives the sink's
// metrics (nil: none).
func NewSQLite(path string, cfg Config, reg prometheus.Registerer) (*SQLite, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sinks: sqlite path %q: must be non-empty and contain no '?'", path)
	}
	d := dialect{
		name:    "sqlite",
		maxVars: sqliteMaxVars,
		quote:   func(s string) string { return `"` + s + `"` },
	}
	d.upsert = onConflictUpsert(d.quote)
	d.rowError = sqliteRowError
	return &SQLite{path: path, e: newSQLEngine(d, cfg.withDefaults(), newMetrics(reg, "sqlite"))}, nil
}

// sqliteSchema creates the tables and the view if missing.
var sqliteSchema = []string{
	`CREATE TABLE IF NOT EXISTS readings (
	source_partition INTEGER NOT NULL,
	source_offset    INTEGER NOT NULL,
	pboxid           TEXT    NOT NULL,
	event_time       TEXT    NOT NULL,
	metric           REAL    NOT NULL,
	latitude         REAL,
	longitude        REAL,
	company          TEXT    NOT NULL DEFAULT '',
	site             TEXT    NOT NULL DEFAULT '',
	epoch            INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (event_time, source_partition, source_offset)
) WITHOUT ROWID, STRICT`,
	`CREATE TABLE IF NOT EXISTS window_aggregates (
	pboxid       TEXT    NOT NULL,
	window_start TEXT    NOT NULL,
	window_end   TEXT    NOT NULL,
	"count"      INTEGER NOT NULL,
	"sum"        REAL    NOT NULL,
	"min"        REAL    NOT NULL,
	"max"        REAL    NOT NULL,
	"avg"        REAL    NOT NULL,
	latitude     REAL,
	longitude    REAL,
	company      TEXT    NOT NULL DEFAULT '',
	site         TEXT    NOT NULL DEFAULT '',
	epoch        INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (pboxid, window_start)
) WITHOUT ROWID, STRICT`,
	`CREATE TABLE IF NOT EXISTS work_periods (
	pboxid       TEXT    NOT NULL,
	period_start TEXT    NOT NULL,
	period_end   TEXT    NOT NULL,
	duration_s   REAL    NOT NULL,
	samples      INTEGER NOT NULL,
	avg_metric   REAL    NOT NULL,
	max_metric   REAL    NOT NULL,
	company      TEXT    NOT NULL DEFAULT '',
	site         TEXT    NOT NULL DEFAULT '',
	epoch        INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (pboxid, period_start)
) WITHOUT ROWID, STRICT`,
	`CREATE TABLE IF NOT EXISTS late_records (
	source_partition INTEGER NOT NULL,
	source_offset    INTEGER NOT NULL,
	pboxid           TEXT    NOT NULL,
	event_time       TEXT    NOT NULL,
	watermark        TEXT    NOT NULL,
	reason           TEXT    NOT NULL,
	payload          BLOB    NOT NULL,
	payload_bytes    INTEGER NOT NULL,
	epoch            INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (source_partition, source_offset)
) STRICT`,
	`CREATE TABLE IF NOT EXISTS dead_letters (
	source_partition INTEGER NOT NULL,
	source_offset    INTEGER NOT NULL,
	reason           TEXT    NOT NULL,
	payload          BLOB    NOT NULL,
	payload_bytes    INTEGER NOT NULL,
	epoch            INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (source_partition, source_offset)
) STRICT`,
	`CREATE TABLE IF NOT EXISTS rejected_rows (
	source_table  TEXT    NOT NULL,
	pboxid        TEXT    NOT NULL,
	start_ms      INTEGER NOT NULL,
	reason        TEXT    NOT NULL,
	payload       BLOB    NOT NULL,
	payload_bytes INTEGER NOT NULL,
	epoch         INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (source_table, pboxid, start_ms)
) STRICT`,
	`CREATE VIEW IF NOT EXISTS daily_work_time AS
SELECT pboxid, substr(period_start, 1, 10) AS day, COUNT(*) AS periods, SUM(duration_s) AS seconds
FROM work_periods GROUP BY pboxid, substr(period_start, 1, 10)`,
}

// SQLiteDSN is the modernc.org/sqlite DSN the sink uses for path: WAL,
// synchronous=NORMAL, a 10 s busy timeout and BEGIN IMMEDIATE
// transactions. Readers may open the same DSN with sql.Open("sqlite", ...).
func SQLiteDSN(path string) string {
	return path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=temp_store(MEMORY)&_pragma=cache_size(-65536)&_txlock=immediate"
}

// Open opens (creating if missing) the database file, its tables and view.
// A second Open is a no-op; Open after Close returns ErrClosed.
func (s *SQLite) Open(ctx context.Context) error {
	return s.e.open(ctx, func(ctx context.Context) (*sql.DB, error) {
		db, err := sql.Open("sqlite", SQLiteDSN(s.path))
		if err != nil {
			return nil, fmt.Errorf("sinks: sqlite %s: %w", s.path, err)
		}
		// One connection: SQLite has one writer, and prepared statements
		// stay valid on it.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		for _, q := range sqliteSchema {
			if _, err := db.ExecContext(ctx, q); err != nil {
				db.Close()
				return nil, fmt.Errorf("sinks: sqlite %s: create schema: %w", s.path, err)
			}
		}
		if err := sqliteMigrate(ctx, db); err != nil {
			db.Close()
			return nil, fmt.Errorf("sinks: sqlite %s: migrate schema: %w", s.path, err)
		}
		conn, err := db.Conn(ctx)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("sinks: sqlite %s: %w", s.path, err)
		}
		s.e.conn = conn
		s.e.afterFlush = s.sync
		return db, nil
	})
}

// sqliteMigrate adds the epoch column to the tables of a database created
// by an eddy without fencing (their rows get epoch 0). Several sinks may
// race to do it: a duplicate column is success.
func sqliteMigrate(ctx context.Context, db *sql.DB) error {
	for _, td := range tableDefs {
		has := func() (bool, error) {
			var n int
			err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?", td.name, epochCol).Scan(&n)
			return n > 0, err
		}
		ok, err := has()
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if _, err := db.ExecContext(ctx, `ALTER TABLE "`+td.name+`" ADD COLUMN "epoch" INTEGER NOT NULL DEFAULT 0`); err != nil {
			if ok, herr := has(); herr != nil || !ok {
				return fmt.Errorf("add column epoch to %s: %w", td.name, err)
			}
		}
	}
	return nil
}

// sync makes every transaction committed on the sink's connection durable
// if some were since the last sync: under synchronous=NORMAL a commit
// reaches the WAL file but not the disk, so sync commits one more
// transaction, which rewrites the database header's user_version (one WAL
// frame), under synchronous=FULL, whose commit fsyncs the WAL file and
// with it every commit before. It costs one fsync per Flush that follows
// writes. io is held.
func (s *SQLite) sync(ctx context.Context) error {
	c := s.e.conn
	var changes int64
	if err := c.QueryRowContext(ctx, "SELECT total_changes()").Scan(&changes); err != nil {
		return fmt.Errorf("sinks: sqlite %s: sync: %w", s.path, err)
	}
	if c == s.syncedConn && changes == s.syncedChanges {
		return nil
	}
	if err := s.fsyncWAL(ctx, c); err != nil {
		return fmt.Errorf("sinks: sqlite %s: sync: %w", s.path, err)
	}
	s.syncedConn, s.syncedChanges = c, changes
	s.syncs++
	return nil
}

// fsyncWAL commits a rewrite of user_version under synchronous=FULL on c
// (see sync), then sets synchronous back to NORMAL.
func (s *SQLite) fsyncWAL(ctx context.Context, c *sql.Conn) (err error) {
	if _, err := c.ExecContext(ctx, "PRAGMA synchronous=FULL"); err != nil {
		return err
	}
	defer func() {
		if _, rerr := c.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous=NORMAL"); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		s.e.rollbackConn()
		return err
	}
	var v int64
	if err := c.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		s.e.rollbackConn()
		return err
	}
	if _, err := c.ExecContext(ctx, "PRAGMA user_version = "+strconv.FormatInt(v, 10)); err != nil {
		s.e.rollbackConn()
		return err
	}
	if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
		s.e.rollbackConn()
		return err
	}
	return nil
}

// Write buffers copies of the rows of b under NoPartition at epoch 0 (see
// WriteEpoch, whose rules apply), and writes the buffer in one
// transaction once Config.BatchRows rows are buffered.
func (s *SQLite) Write(ctx context.Context, b *Batch) error { return s.e.write(ctx, NoPartition, 0, b) }

// WriteEpoch implements EpochWriter: it buffers copies of the rows of b as
// written by partition p under lease epoch, and writes the buffer in one
// transaction once Config.BatchRows rows are buffered.
func (s *SQLite) WriteEpoch(ctx context.Context, p int32, epoch uint64, b *Batch) error {
	return s.e.write(ctx, p, epoch, b)
}

// Drop implements EpochWriter.
func (s *SQLite) Drop(p int32) int { return s.e.drop(p) }

// SetLeaseGuard implements EpochWriter.
func (s *SQLite) SetLeaseGuard(valid func(p int32, epoch uint64) bool) { s.e.setGuard(valid) }

// SetBackpressureHook implements EpochWriter.
func (s *SQLite) SetBackpressureHook(fn func(p int32, waiting bool)) { s.e.setBackpressure(fn) }

// Flush writes every buffered row in one transaction and returns when it is
// committed and, with every row committed before, fsynced (see sync; rows
// the store refuses are isolated and replaced by their rejections; see
// ReasonSinkRejected). On error the rows stay buffered for the next Flush.
func (s *SQLite) Flush(ctx context.Context) error { return s.e.flush(ctx) }

// Close writes the buffered rows (within 30 s) and closes the database. It
// is idempotent; the error reports rows it had to drop.
func (s *SQLite) Close() error { return s.e.close(30 * time.Second) }
