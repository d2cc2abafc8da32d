package sinks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/sinks/secret"
)

// Postgres writes to a PostgreSQL 13+ database (driver jackc/pgx v5 through
// its database/sql adapter): the six tables, created by Open if missing,
// and the view daily_work_time.
//
// Times are TIMESTAMP(3) (without time zone) in UTC; absent coordinates
// are NULL; payloads are BYTEA; strings are TEXT-like VARCHAR columns with
// the collation "C", so keys compare and sort bytewise, exactly as in
// SQLite and MySQL. PostgreSQL text cannot hold U+0000: it is stored as
// U+FFFD. readings is not partitioned.
//
// Rows are written with multi-row INSERT ... ON CONFLICT (key) DO UPDATE,
// so a replayed row replaces itself; a transaction carries at most one row
// per key of a table (ON CONFLICT cannot affect a row twice in one
// statement): of several rows of a key buffered before a flush, the last of
// the highest epoch is sent, the one the other stores keep. Write and Flush
// are safe for concurrent use; they serialise on one mutex that is held
// while writing. Several processes may write to the same database.
type Postgres struct {
	cfg *pgx.ConnConfig
	url string // redacted, for messages
	e   *sqlEngine
}

var (
	_ Sink        = (*Postgres)(nil)
	_ EpochWriter = (*Postgres)(nil)
)

// pgMaxVars is the PostgreSQL protocol's limit on bound parameters in a
// statement (a 16-bit count).
const pgMaxVars = 65535

// pgStmtBytes bounds the estimated size of one statement: a flush of
// rows with large payloads is cut into statements well below the
// protocol's 1 GB message limit.
const pgStmtBytes = 64 << 20

// pgSchemaLock is the key of the advisory lock Open holds while it creates
// or migrates the schema, so that sinks opening at once do not race on
// CREATE TABLE IF NOT EXISTS (which is not atomic in PostgreSQL).
const pgSchemaLock = 0x65646479 // "eddy"

// NewPostgres returns a sink writing to the database a PostgreSQL URL
// names, in pgx's form postgres://user:pass@host:5432/db?sslmode=disable
// (postgresql:// too; any libpq parameter pgx knows may follow the '?').
// The database must be named and is created by Open if missing (which
// needs the CREATEDB privilege). Without connect_timeout a connection
// attempt is bounded by 10 s. It returns an error for an invalid cfg or a
// URL that does not parse; errors never show the password. reg receives
// the sink's metrics (nil: none).
func NewPostgres(url string, cfg Config, reg prometheus.Registerer) (*Postgres, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := ParsePostgresURL(url)
	if err != nil {
		return nil, err
	}
	d := dialect{
		name:      "postgres",
		maxVars:   pgMaxVars,
		stmtBytes: pgStmtBytes,
		quote:     pgQuote,
		rowError:  pgRowError,
		numbered:  true,
		dedupe:    true,
		noNUL:     true,
	}
	d.upsert = onConflictUpsert(d.quote)
	s := &Postgres{cfg: pc, url: secret.RedactURL(url)}
	s.e = newSQLEngine(d, cfg.withDefaults(), newMetrics(reg, "postgres"))
	return s, nil
}

// ParsePostgresURL parses a postgres:// or postgresql:// URL with pgx and
// requires a database name. Without connect_timeout it sets 10 s.
func ParsePostgresURL(url string) (*pgx.ConnConfig, error) {
	const want = "want postgres://USER@HOST:5432/DB?sslmode=disable, with USER:PASSWORD@ for a password"
	if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
		return nil, fmt.Errorf("sinks: bad PostgreSQL URL %q (%s)", secret.RedactURL(url), want)
	}
	pc, err := pgx.ParseConfig(url)
	if err != nil {
		// pgconn's message quotes the URL; say only why it failed.
		why := err.Error()
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			why = pe.Unwrap().Error()
		}
		return nil, fmt.Errorf("sinks: bad PostgreSQL URL %q (%s): %s", secret.RedactURL(url), want, secret.RedactText(why))
	}
	if pc.Database == "" {
		return nil, fmt.Errorf("sinks: PostgreSQL URL %q names no database (%s)", secret.RedactURL(url), want)
	}
	if !strings.Contains(url, "connect_timeout=") {
		pc.ConnectTimeout = 10 * time.Second
	}
	return pc, nil
}

// pgQuote quotes an identifier.
func pgQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// pgSchema creates the tables and the view if missing; the epoch columns
// are added to tables of an older eddy (rows at epoch 0).
var pgSchema = []string{
	`CREATE TABLE IF NOT EXISTS readings (
	source_partition INTEGER          NOT NULL,
	source_offset    BIGINT           NOT NULL,
	pboxid           VARCHAR(64)  COLLATE "C" NOT NULL,
	event_time       TIMESTAMP(3)     NOT NULL,
	metric           DOUBLE PRECISION NOT NULL,
	latitude         DOUBLE PRECISION NULL,
	longitude        DOUBLE PRECISION NULL,
	company          VARCHAR(255) COLLATE "C" NOT NULL DEFAULT '',
	site             VARCHAR(255) COLLATE "C" NOT NULL DEFAULT '',
	epoch            BIGINT           NOT NULL DEFAULT 0,
	PRIMARY KEY (event_time, source_partition, source_offset)
)`,
	`CREATE TABLE IF NOT EXISTS window_aggregates (
	pboxid       VARCHAR(64)  COLLATE "C" NOT NULL,
	window_start TIMESTAMP(3)     NOT NULL,
	window_end   TIMESTAMP(3)     NOT NULL,
	"count"      BIGINT           NOT NULL,
	"sum"        DOUBLE PRECISION NOT NULL,
	"min"        DOUBLE PRECISION NOT NULL,
	"max"        DOUBLE PRECISION NOT NULL,
	"avg"        DOUBLE PRECISION NOT NULL,
	latitude     DOUBLE PRECISION NULL,
	longitude    DOUBLE PRECISION NULL,
	company      VARCHAR(255) COLLATE "C" NOT NULL DEFAULT '',
	site         VARCHAR(255) COLLATE "C" NOT NULL DEFAULT '',
	epoch        BIGINT           NOT NULL DEFAULT 0,
	PRIMARY KEY (pboxid, window_start)
)`,
	`CREATE TABLE IF NOT EXISTS work_periods (
	pboxid       VARCHAR(64)  COLLATE "C" NOT NULL,
	period_start TIMESTAMP(3)     NOT NULL,
	period_end   TIMESTAMP(3)     NOT NULL,
	duration_s   DOUBLE PRECISION NOT NULL,
	samples      BIGINT           NOT NULL,
	avg_metric   DOUBLE PRECISION NOT NULL,
	max_metric   DOUBLE PRECISION NOT NULL,
	company      VARCHAR(255) COLLATE "C" NOT NULL DEFAULT '',
	site         VARCHAR(255) COLLATE "C" NOT NULL DEFAULT '',
	epoch        BIGINT           NOT NULL DEFAULT 0,
	PRIMARY KEY (pboxid, period_start)
)`,
	`CREATE TABLE IF NOT EXISTS late_records (
	source_partition INTEGER      NOT NULL,
	source_offset    BIGINT       NOT NULL,
	pboxid           VARCHAR(64)  COLLATE "C" NOT NULL,
	event_time       TIMESTAMP(3) NOT NULL,
	watermark        TIMESTAMP(3) NOT NULL,
	reason           VARCHAR(255) COLLATE "C" NOT NULL,
	payload          BYTEA        NOT NULL,
	payload_bytes    BIGINT       NOT NULL,
	epoch            BIGINT       NOT NULL DEFAULT 0,
	PRIMARY KEY (source_partition, source_offset)
)`,
	`CREATE TABLE IF NOT EXISTS dead_letters (
	source_partition INTEGER      NOT NULL,
	source_offset    BIGINT       NOT NULL,
	reason           VARCHAR(255) COLLATE "C" NOT NULL,
	payload          BYTEA        NOT NULL,
	payload_bytes    BIGINT       NOT NULL,
	epoch            BIGINT       NOT NULL DEFAULT 0,
	PRIMARY KEY (source_partition, source_offset)
)`,
	`CREATE TABLE IF NOT EXISTS rejected_rows (
	source_table  VARCHAR(64)  COLLATE "C" NOT NULL,
	pboxid        VARCHAR(64)  COLLATE "C" NOT NULL,
	start_ms      BIGINT       NOT NULL,
	reason        VARCHAR(255) COLLATE "C" NOT NULL,
	payload       BYTEA        NOT NULL,
	payload_bytes BIGINT       NOT NULL,
	epoch         BIGINT       NOT NULL DEFAULT 0,
	PRIMARY KEY (source_table, pboxid, start_ms)
)`,
	`CREATE OR REPLACE VIEW daily_work_time AS
SELECT pboxid, CAST(period_start AS DATE) AS day, COUNT(*) AS periods, SUM(duration_s) AS seconds
FROM work_periods GROUP BY pboxid, CAST(period_start AS DATE)`,
}

// Open connects, creates the database if missing, and the tables and view
// if missing (adding the epoch column to tables of an older eddy), under an
// advisory lock. A second Open is a no-op; Open after Close returns
// ErrClosed.
func (s *Postgres) Open(ctx context.Context) error {
	return s.e.open(ctx, func(ctx context.Context) (*sql.DB, error) {
		db, err := s.connect(ctx)
		if err != nil {
			return nil, err
		}
		if err := pgSetup(ctx, db); err != nil {
			db.Close()
			return nil, fmt.Errorf("sinks: postgres %s: %w", s.url, err)
		}
		return db, nil
	})
}

// connect opens the pool and pings, creating the database if it is missing
// (SQLSTATE 3D000).
func (s *Postgres) connect(ctx context.Context) (*sql.DB, error) {
	db := stdlib.OpenDB(*s.cfg)
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	db.SetConnMaxLifetime(5 * time.Minute)
	err := db.PingContext(ctx)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "3D000" { // invalid_catalog_name
		err = s.createDatabase(ctx)
		if err == nil {
			err = db.PingContext(ctx)
		}
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sinks: postgres %s: %w", s.url, secret.RedactError(err))
	}
	return db, nil
}

// createDatabase creates the sink's database, connected to the database
// "postgres". Another sink creating it meanwhile (42P04) is success.
func (s *Postgres) createDatabase(ctx context.Context) error {
	c := s.cfg.Copy()
	c.Database = "postgres"
	db := stdlib.OpenDB(*c)
	defer db.Close()
	_, err := db.ExecContext(ctx, "CREATE DATABASE "+pgQuote(s.cfg.Database))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P04" { // duplicate_database
		return nil
	}
	return err
}

// pgSetup creates or migrates the schema in one transaction under the
// advisory lock pgSchemaLock.
func pgSetup(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(pgSchemaLock)); err != nil {
		return fmt.Errorf("lock schema: %w", err)
	}
	for _, q := range pgSchema {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	for _, td := range tableDefs {
		if _, err := tx.ExecContext(ctx, "ALTER TABLE "+pgQuote(td.name)+" ADD COLUMN IF NOT EXISTS epoch BIGINT NOT NULL DEFAULT 0"); err != nil {
			return fmt.Errorf("migrate schema: add column epoch to %s: %w", td.name, err)
		}
	}
	return tx.Commit()
}

// pgRowError reports whether err is PostgreSQL refusing a row's values:
// SQLSTATE class 22 (data exception: a value out of range, too long, an
// invalid byte sequence) or 23 (integrity constraint violation: NOT NULL,
// CHECK, a foreign key). Connection errors (class 08), serialization
// failures and deadlocks (40), resource errors (53), operator
// intervention (57) and everything else are not: the rows stay buffered
// and are retried.
func pgRowError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23":
		return true
	}
	return false
}

// Write buffers copies of the rows of b under NoPartition at epoch 0 (see
// WriteEpoch, whose rules apply), and writes the buffer in one
// transaction once Config.BatchRows rows are buffered.
func (s *Postgres) Write(ctx context.Context, b *Batch) error {
	return s.e.write(ctx, NoPartition, 0, b)
}

// WriteEpoch implements EpochWriter: it buffers copies of the rows of b as
// written by partition p under lease epoch, and writes the buffer in one
// transaction once Config.BatchRows rows are buffered.
func (s *Postgres) WriteEpoch(ctx context.Context, p int32, epoch uint64, b *Batch) error {
	return s.e.write(ctx, p, epoch, b)
}

// Drop implements EpochWriter.
func (s *Postgres) Drop(p int32) int { return s.e.drop(p) }

// SetLeaseGuard implements EpochWriter.
func (s *Postgres) SetLeaseGuard(valid func(p int32, epoch uint64) bool) { s.e.setGuard(valid) }

// SetBackpressureHook implements EpochWriter.
func (s *Postgres) SetBackpressureHook(fn func(p int32, waiting bool)) { s.e.setBackpressure(fn) }

// Flush writes every buffered row in one transaction and returns when it is
// committed (rows the store refuses are isolated and replaced by their
// rejections; see ReasonSinkRejected). On error the rows stay buffered for
// the next Flush.
func (s *Postgres) Flush(ctx context.Context) error { return s.e.flush(ctx) }

// Close writes the buffered rows (within 30 s) and closes the connections.
// It is idempotent; the error reports rows it had to drop.
func (s *Postgres) Close() error { return s.e.close(30 * time.Second) }
