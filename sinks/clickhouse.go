package sinks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/sinks/secret"
)

// ClickHouse writes to a ClickHouse database over the native protocol
// (TCP, default port 9000): the six tables, created by Open if missing,
// and the view daily_work_time.
//
// The driver is ClickHouse's official Go client in its v1 line
// (github.com/ClickHouse/clickhouse-go v1.5, a database/sql driver): it
// speaks the native protocol to old servers too, such as the 18.16 that
// Debian 12 ships, where the v2 client's batch insert fails ("expected 0
// arguments"). A batch is the driver's transaction: INSERT INTO t (cols)
// VALUES (?, ...) prepared once, executed per row, and sent as one block
// on Commit — atomic per table (up to the server's max_insert_block_size
// rows, 1,048,576 by default), not across tables. The driver's Commit does
// not watch a context: Flush checks its context before each commit, and
// the commit itself is bounded by the URL's read_timeout and write_timeout
// (60 s each by default).
//
// Every table is a ReplacingMergeTree(epoch) ordered by the key of the SQL
// sinks' primary key (readings by (event_time, source_partition,
// source_offset), window_aggregates by (pboxid, window_start), ...). Rows
// with the same key collapse to one: the one with the highest epoch, of
// those the last inserted. So a replay, a re-fired window and the retry of
// a flush whose later tables failed leave the same contents, and a row of
// an older lease epoch never replaces a newer one (the fencing rule of the
// SQL sinks). Collapsing happens in background merges: read with FINAL
// (SELECT ... FROM window_aggregates FINAL) to see one row per key, as
// sinktest.ReadClickHouse and the view daily_work_time do.
//
// Times are Int64 Unix milliseconds (UTC), under the SQL sinks' column
// names: 18.16 has no DateTime64; toDateTime(intDiv(event_time, 1000),
// 'UTC') gives a DateTime. Absent coordinates are NULL (Nullable(Float64));
// strings and payloads are String (bytes as given); epoch is UInt64.
// Nothing is partitioned.
//
// Write and Flush are safe for concurrent use; they serialise on one mutex
// that is held while writing. Several processes may write to the same
// database.
type ClickHouse struct {
	cfg ClickHouseConfig
	e   *sqlEngine
}

var (
	_ Sink        = (*ClickHouse)(nil)
	_ EpochWriter = (*ClickHouse)(nil)
)

// ClickHouseConfig is a parsed clickhouse:// URL.
type ClickHouseConfig struct {
	Addr     string // host:port, default port 9000
	User     string // default "default"
	Password string
	Database string // required
	// Driver options passed on (see ParseClickHouseURL): secure,
	// skip_verify, compress, timeout, read_timeout, write_timeout.
	Options url.Values
}

// clickHouseOptions are the query parameters a clickhouse:// URL may carry,
// with their defaults: timeout is the connect timeout, read_timeout and
// write_timeout bound each read and write on the connection (seconds).
var clickHouseOptions = map[string]string{
	"secure":        "false",
	"skip_verify":   "false",
	"compress":      "false",
	"timeout":       "10",
	"read_timeout":  "60",
	"write_timeout": "60",
}

// ParseClickHouseURL parses clickhouse://[USER[:PASSWORD]@]HOST[:PORT]/DB[?OPTIONS]:
// port 9000 and user "default" unless given; the database is required.
// OPTIONS: secure=true (TLS), skip_verify=true (no certificate check),
// compress=true (LZ4 blocks), timeout=10 (connect, seconds),
// read_timeout=60, write_timeout=60 (seconds). Errors never show the
// password.
func ParseClickHouseURL(raw string) (ClickHouseConfig, error) {
	const want = "want clickhouse://USER:PASSWORD@HOST:9000/DB"
	bad := func(why string) (ClickHouseConfig, error) {
		return ClickHouseConfig{}, fmt.Errorf("sinks: bad ClickHouse URL %q (%s): %s", secret.RedactURL(raw), want, why)
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return bad(secret.RedactText(err.Error()))
	}
	if u.Scheme != "clickhouse" || u.Opaque != "" {
		return bad("not a clickhouse:// URL")
	}
	if u.Host == "" {
		return bad("no host")
	}
	c := ClickHouseConfig{Addr: u.Host, User: "default", Options: url.Values{}}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		c.Addr = net.JoinHostPort(strings.Trim(u.Host, "[]"), "9000")
	}
	if u.User != nil {
		if n := u.User.Username(); n != "" {
			c.User = n
		}
		c.Password, _ = u.User.Password()
	}
	c.Database = strings.TrimPrefix(u.Path, "/")
	if c.Database == "" {
		return ClickHouseConfig{}, fmt.Errorf("sinks: ClickHouse URL %q names no database (%s)", secret.RedactURL(raw), want)
	}
	if strings.Contains(c.Database, "/") {
		return bad("the path must be one database name")
	}
	for k, vs := range u.Query() {
		if _, ok := clickHouseOptions[k]; !ok {
			known := make([]string, 0, len(clickHouseOptions))
			for o := range clickHouseOptions {
				known = append(known, o)
			}
			slices.Sort(known)
			return bad(fmt.Sprintf("unknown option %q (known: %s)", k, strings.Join(known, ", ")))
		}
		v := vs[len(vs)-1]
		switch k {
		case "secure", "skip_verify", "compress":
			if _, err := strconv.ParseBool(v); err != nil {
				return bad(fmt.Sprintf("%s=%q is not true or false", k, v))
			}
		default:
			if f, err := strconv.ParseFloat(v, 64); err != nil || !(f > 0) {
				return bad(fmt.Sprintf("%s=%q is not a positive number of seconds", k, v))
			}
		}
		c.Options.Set(k, v)
	}
	return c, nil
}

// String is the URL with the password masked.
func (c ClickHouseConfig) String() string {
	u := url.URL{Scheme: "clickhouse", Host: c.Addr, Path: "/" + c.Database, RawQuery: c.Options.Encode()}
	if c.Password != "" {
		u.User = url.UserPassword(c.User, "xxxxx")
	} else {
		u.User = url.User(c.User)
	}
	return u.String()
}

// driverDSN is the clickhouse-go v1 DSN of database db (tcp://HOST:PORT?...).
func (c ClickHouseConfig) driverDSN(db string) string {
	q := url.Values{}
	for k, def := range clickHouseOptions {
		q.Set(k, def)
	}
	for k := range c.Options {
		q.Set(k, c.Options.Get(k))
	}
	q.Set("username", c.User)
	q.Set("password", c.Password)
	q.Set("database", db)
	return (&url.URL{Scheme: "tcp", Host: c.Addr, RawQuery: q.Encode()}).String()
}

// OpenClickHouseDB opens a database/sql pool (driver clickhouse-go v1) on
// the database a clickhouse:// URL names, for readers such as
// sinktest.ReadClickHouse; it does not connect until first used. Errors never show
// the password.
func OpenClickHouseDB(rawURL string) (*sql.DB, error) {
	c, err := ParseClickHouseURL(rawURL)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("clickhouse", c.driverDSN(c.Database))
	if err != nil {
		return nil, fmt.Errorf("sinks: clickhouse %s: %w", c, secret.RedactError(err))
	}
	return db, nil
}

// NewClickHouse returns a sink writing to the database a clickhouse:// URL
// names (see ParseClickHouseURL), e.g.
// clickhouse://eddy:secret@127.0.0.1:9000/eddy; the database is created by
// Open if missing. It returns an error for an invalid cfg or a URL that
// does not parse. reg receives the sink's metrics (nil: none).
func NewClickHouse(rawURL string, cfg Config, reg prometheus.Registerer) (*ClickHouse, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := ParseClickHouseURL(rawURL)
	if err != nil {
		return nil, err
	}
	d := dialect{
		name:     "clickhouse",
		maxVars:  1 << 30,
		quote:    chQuote,
		upsert:   func(*tableDef, bool) string { return "" },
		rowError: chRowError,
		msTimes:  true,
		batches:  true,
		// One row per key per batch: the one the merge would keep,
		// without sending the others.
		dedupe: true,
	}
	s := &ClickHouse{cfg: c}
	s.e = newSQLEngine(d, cfg.withDefaults(), newMetrics(reg, "clickhouse"))
	return s, nil
}

// chQuote quotes an identifier.
func chQuote(s string) string { return "`" + strings.ReplaceAll(s, "`", "\\`") + "`" }

// chSchema creates the tables and the view if missing.
var chSchema = []string{
	`CREATE TABLE IF NOT EXISTS readings (
	source_partition Int32,
	source_offset    Int64,
	pboxid           String,
	event_time       Int64,
	metric           Float64,
	latitude         Nullable(Float64),
	longitude        Nullable(Float64),
	company          String,
	site             String,
	epoch            UInt64
) ENGINE = ReplacingMergeTree(epoch) ORDER BY (event_time, source_partition, source_offset)`,
	"CREATE TABLE IF NOT EXISTS window_aggregates (" + `
	pboxid       String,
	window_start Int64,
	window_end   Int64,
	` + "`count`" + `      Int64,
	` + "`sum`" + `        Float64,
	` + "`min`" + `        Float64,
	` + "`max`" + `        Float64,
	` + "`avg`" + `        Float64,
	latitude     Nullable(Float64),
	longitude    Nullable(Float64),
	company      String,
	site         String,
	epoch        UInt64
) ENGINE = ReplacingMergeTree(epoch) ORDER BY (pboxid, window_start)`,
	`CREATE TABLE IF NOT EXISTS work_periods (
	pboxid       String,
	period_start Int64,
	period_end   Int64,
	duration_s   Float64,
	samples      Int64,
	avg_metric   Float64,
	max_metric   Float64,
	company      String,
	site         String,
	epoch        UInt64
) ENGINE = ReplacingMergeTree(epoch) ORDER BY (pboxid, period_start)`,
	`CREATE TABLE IF NOT EXISTS late_records (
	source_partition Int32,
	source_offset    Int64,
	pboxid           String,
	event_time       Int64,
	watermark        Int64,
	reason           String,
	payload          String,
	payload_bytes    Int64,
	epoch            UInt64
) ENGINE = ReplacingMergeTree(epoch) ORDER BY (source_partition, source_offset)`,
	`CREATE TABLE IF NOT EXISTS dead_letters (
	source_partition Int32,
	source_offset    Int64,
	reason           String,
	payload          String,
	payload_bytes    Int64,
	epoch            UInt64
) ENGINE = ReplacingMergeTree(epoch) ORDER BY (source_partition, source_offset)`,
	`CREATE TABLE IF NOT EXISTS rejected_rows (
	source_table  String,
	pboxid        String,
	start_ms      Int64,
	reason        String,
	payload       String,
	payload_bytes Int64,
	epoch         UInt64
) ENGINE = ReplacingMergeTree(epoch) ORDER BY (source_table, pboxid, start_ms)`,
	`CREATE VIEW IF NOT EXISTS daily_work_time AS
SELECT pboxid, toDate(toDateTime(intDiv(period_start, 1000), 'UTC'), 'UTC') AS day, count() AS periods, sum(duration_s) AS seconds
FROM work_periods FINAL GROUP BY pboxid, day`,
}

// Open connects, creates the database if missing, and the tables and view
// if missing; it checks that each existing table is a
// ReplacingMergeTree(epoch). A second Open is a no-op; Open after Close
// returns ErrClosed.
func (s *ClickHouse) Open(ctx context.Context) error {
	return s.e.open(ctx, func(ctx context.Context) (*sql.DB, error) {
		db, err := s.connect(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.setup(ctx, db); err != nil {
			db.Close()
			return nil, fmt.Errorf("sinks: clickhouse %s: %w", s.cfg, chError(err))
		}
		return db, nil
	})
}

// connect creates the database if missing (connected to the database
// "default"), then opens the pool on it and pings.
func (s *ClickHouse) connect(ctx context.Context) (*sql.DB, error) {
	fail := func(err error) (*sql.DB, error) {
		return nil, fmt.Errorf("sinks: clickhouse %s: %w", s.cfg, chError(err))
	}
	boot, err := sql.Open("clickhouse", s.cfg.driverDSN("default"))
	if err != nil {
		return fail(err)
	}
	_, err = boot.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+chQuote(s.cfg.Database))
	boot.Close()
	if err != nil {
		return fail(fmt.Errorf("create database: %w", err))
	}
	db, err := sql.Open("clickhouse", s.cfg.driverDSN(s.cfg.Database))
	if err != nil {
		return fail(err)
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	db.SetConnMaxLifetime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return fail(err)
	}
	return db, nil
}

func (s *ClickHouse) setup(ctx context.Context, db *sql.DB) error {
	for _, q := range chSchema {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	for _, td := range tableDefs {
		var engine, full string
		err := db.QueryRowContext(ctx, "SELECT engine, engine_full FROM system.tables WHERE database = currentDatabase() AND name = ?", td.name).Scan(&engine, &full)
		if err != nil {
			return fmt.Errorf("check table %s: %w", td.name, err)
		}
		if engine != "ReplacingMergeTree" || !strings.HasPrefix(full, "ReplacingMergeTree(epoch)") {
			return fmt.Errorf("table %s exists but is %s, not ReplacingMergeTree(epoch): drop or rename it, eddy creates it", td.name, full)
		}
	}
	return nil
}

// chRowError reports whether err is ClickHouse refusing a batch for its
// values: a throwIf in a DEFAULT or MATERIALIZED expression (395), a CHECK
// constraint of a newer server (469), a value out of range for its type
// (321), a type mismatch or conversion (53, 70), text that does not parse
// (6, 27, 38, 41). Network errors, timeouts, memory limits and everything
// else are not: the rows stay buffered and are retried.
func chRowError(err error) bool {
	var ce *clickhouse.Exception
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Code {
	case 6, 27, 38, 41, 53, 70, 321, 395, 469:
		return true
	}
	return false
}

// chError makes a driver error say where it came from (an Exception prints
// only its code and message); a ClickHouse error never carries the
// password, but text is masked anyway.
func chError(err error) error {
	var ce *clickhouse.Exception
	if errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", ce.Name, err)
	}
	return secret.RedactError(err)
}

// Write buffers copies of the rows of b under NoPartition at epoch 0 (see
// WriteEpoch, whose rules apply), and writes the buffer once
// Config.BatchRows rows are buffered.
func (s *ClickHouse) Write(ctx context.Context, b *Batch) error {
	return s.e.write(ctx, NoPartition, 0, b)
}

// WriteEpoch implements EpochWriter: it buffers copies of the rows of b as
// written by partition p under lease epoch, and writes the buffer once
// Config.BatchRows rows are buffered.
func (s *ClickHouse) WriteEpoch(ctx context.Context, p int32, epoch uint64, b *Batch) error {
	return s.e.write(ctx, p, epoch, b)
}

// Drop implements EpochWriter.
func (s *ClickHouse) Drop(p int32) int { return s.e.drop(p) }

// SetLeaseGuard implements EpochWriter.
func (s *ClickHouse) SetLeaseGuard(valid func(p int32, epoch uint64) bool) { s.e.setGuard(valid) }

// SetBackpressureHook implements EpochWriter.
func (s *ClickHouse) SetBackpressureHook(fn func(p int32, waiting bool)) { s.e.setBackpressure(fn) }

// Flush writes every buffered row, one batch per table, and returns when
// every batch is committed (rows the store refuses are isolated and
// replaced by their rejections; see ReasonSinkRejected). On error the rows
// stay buffered for the next Flush (batches already committed are written
// again, and collapse with themselves).
func (s *ClickHouse) Flush(ctx context.Context) error { return s.e.flush(ctx) }

// Close writes the buffered rows (within 30 s) and closes the connections.
// It is idempotent; the error reports rows it had to drop.
func (s *ClickHouse) Close() error { return s.e.close(30 * time.Second) }
