package sinks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/sinks/secret"
)

// MySQL writes to a MySQL 8 or MariaDB 10.5+ database (driver
// go-sql-driver/mysql): the five tables, created by Open if missing, and the
// view daily_work_time.
//
// Times are DATETIME(3) in UTC; absent coordinates are NULL; payloads are
// MEDIUMBLOBs; strings are utf8mb4 with a binary, no-pad collation
// (utf8mb4_nopad_bin on MariaDB, utf8mb4_0900_bin on MySQL), so keys compare
// exactly as in SQLite. The readings table is partitioned by day on
// event_time; see the partition scheme in mysql_partitions.go and the
// package documentation.
//
// Rows are written with multi-row INSERT ... ON DUPLICATE KEY UPDATE
// statements of about Config.BatchBytes each (and at most 65,535
// placeholders), so a replayed row replaces itself; a flush writes over
// Config.Conns connections in parallel, one transaction per group of
// tables. The statements are server-side prepared (COM_STMT_PREPARE, then
// COM_STMT_EXECUTE with binary values): one per table and rows per
// statement — the full size, and powers of two for a table's last rows —
// prepared on a connection the first time it runs there, at most 64 kept
// per sink (the least recently used closed). MariaDB 10.11 holds about
// 4.7 MB for a prepared 1,024-row readings upsert, so a connection that
// ran every shape of a table holds about twice that. A statement the
// server refuses to prepare (max_prepared_stmt_count reached) is sent as
// text; Config.TextStatements sends every statement as text. Write and Flush are safe for
// concurrent use; flushes serialise (one at a time). Several processes may
// write to the same database.
type MySQL struct {
	dsn *mysql.Config
	e   *sqlEngine
	now func() time.Time // clock for "today" at Open; tests replace it

	// Guarded by e.mu (used from e.beforeWrite and Open).
	db      *sql.DB
	layout  partLayout
	covered map[int64]bool // event days whose partitions (and days ahead) were ensured
}

var (
	_ Sink        = (*MySQL)(nil)
	_ EpochWriter = (*MySQL)(nil)
)

// mysqlMaxVars is the MySQL protocol's limit on placeholders in a statement.
const mysqlMaxVars = 65535

// NewMySQL returns a sink writing to the database a go-sql-driver DSN names
// (e.g. "eddy:secret@tcp(127.0.0.1:3306)/eddy"); the database must be named
// and is created by Open if missing. The DSN is normalised: parseTime=true
// and loc=UTC are forced, and interpolateParams=true is added unless the
// DSN sets it (see NormalizeMySQLDSN); it applies to the statements sent
// as text (the schema, partitions, Config.TextStatements), the prepared
// upserts do not depend on it. It returns an error for an invalid
// cfg or a DSN that does not parse. reg receives the sink's metrics (nil: none).
func NewMySQL(dsn string, cfg Config, reg prometheus.Registerer) (*MySQL, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mc, err := NormalizeMySQLDSN(dsn)
	if err != nil {
		return nil, err
	}
	d := dialect{
		name:    "mysql",
		maxVars: mysqlMaxVars,
		quote:   func(s string) string { return "`" + s + "`" },
	}
	d.upsert = func(t *tableDef, fenced bool) string {
		var b strings.Builder
		b.WriteString("ON DUPLICATE KEY UPDATE ")
		for i, c := range t.nonKey() {
			if i > 0 {
				b.WriteString(", ")
			}
			c = d.quote(c)
			if fenced {
				// The epoch is assigned last: MySQL and MariaDB evaluate
				// the assignments left to right, later ones seeing the
				// updated values, so every IF compares with the stored
				// row's epoch.
				fmt.Fprintf(&b, "%s = IF(VALUES(`epoch`) >= `epoch`, VALUES(%s), %s)", c, c, c)
			} else {
				fmt.Fprintf(&b, "%s = VALUES(%s)", c, c)
			}
		}
		if fenced {
			b.WriteString(", `epoch` = GREATEST(`epoch`, VALUES(`epoch`))")
		}
		return b.String()
	}
	d.rowError = mysqlRowError
	d.deadlock = mysqlDeadlock
	d.prepared = !cfg.TextStatements
	d.textFallback = mysqlCannotPrepare
	d.staleStmt = mysqlStaleStmt
	s := &MySQL{dsn: mc, now: time.Now}
	s.e = newSQLEngine(d, cfg.withDefaults(), newMetrics(reg, "mysql"))
	s.e.conns = s.e.cfg.Conns
	s.e.stmtRows = mysqlMaxVars // statements are sized by BatchBytes (setup)
	s.e.beforeWrite = s.ensureReadingPartitions
	return s, nil
}

// NormalizeMySQLDSN parses a go-sql-driver DSN, requires a database name,
// and forces parseTime=true and loc=UTC; it adds interpolateParams=true
// and the session variable lock_wait_timeout=30 (seconds) unless the DSN
// sets them.
func NormalizeMySQLDSN(dsn string) (*mysql.Config, error) {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("sinks: bad MySQL DSN %q (want user:pass@tcp(host:3306)/db): %w", secret.RedactDSN(dsn), err)
	}
	if mc.DBName == "" {
		return nil, fmt.Errorf("sinks: MySQL DSN %q names no database (want user:pass@tcp(host:3306)/db)", secret.RedactDSN(dsn))
	}
	mc.ParseTime = true
	mc.Loc = time.UTC
	if !strings.Contains(dsn, "interpolateParams=") {
		mc.InterpolateParams = true
	}
	if _, ok := mc.Params["lock_wait_timeout"]; !ok {
		// Bound the wait of partition DDL for metadata locks (and of
		// writes queued behind it); the server default is a year.
		if mc.Params == nil {
			mc.Params = map[string]string{}
		}
		mc.Params["lock_wait_timeout"] = "30"
	}
	return mc, nil
}

// mysqlSchema creates the tables if missing; {collation} and {today} are filled in.
var mysqlSchema = []string{
	`CREATE TABLE IF NOT EXISTS readings (
	source_partition INT          NOT NULL,
	source_offset    BIGINT       NOT NULL,
	pboxid           VARCHAR(64)  NOT NULL,
	event_time       DATETIME(3)  NOT NULL,
	metric           DOUBLE       NOT NULL,
	latitude         DOUBLE       NULL,
	longitude        DOUBLE       NULL,
	company          VARCHAR(255) NOT NULL DEFAULT '',
	site             VARCHAR(255) NOT NULL DEFAULT '',
	epoch            BIGINT UNSIGNED NOT NULL DEFAULT 0,
	PRIMARY KEY (event_time, source_partition, source_offset)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}
PARTITION BY RANGE COLUMNS(event_time) (
	PARTITION p_past VALUES LESS THAN ('{today}'),
	PARTITION p_future VALUES LESS THAN (MAXVALUE)
)`,
	"CREATE TABLE IF NOT EXISTS window_aggregates (" + `
	pboxid       VARCHAR(64)  NOT NULL,
	window_start DATETIME(3)  NOT NULL,
	window_end   DATETIME(3)  NOT NULL,
	` + "`count`" + `      BIGINT       NOT NULL,
	` + "`sum`" + `        DOUBLE       NOT NULL,
	` + "`min`" + `        DOUBLE       NOT NULL,
	` + "`max`" + `        DOUBLE       NOT NULL,
	` + "`avg`" + `        DOUBLE       NOT NULL,
	latitude     DOUBLE       NULL,
	longitude    DOUBLE       NULL,
	company      VARCHAR(255) NOT NULL DEFAULT '',
	site         VARCHAR(255) NOT NULL DEFAULT '',
	epoch        BIGINT UNSIGNED NOT NULL DEFAULT 0,
	PRIMARY KEY (pboxid, window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}`,
	`CREATE TABLE IF NOT EXISTS work_periods (
	pboxid       VARCHAR(64)  NOT NULL,
	period_start DATETIME(3)  NOT NULL,
	period_end   DATETIME(3)  NOT NULL,
	duration_s   DOUBLE       NOT NULL,
	samples      BIGINT       NOT NULL,
	avg_metric   DOUBLE       NOT NULL,
	max_metric   DOUBLE       NOT NULL,
	company      VARCHAR(255) NOT NULL DEFAULT '',
	site         VARCHAR(255) NOT NULL DEFAULT '',
	epoch        BIGINT UNSIGNED NOT NULL DEFAULT 0,
	PRIMARY KEY (pboxid, period_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}`,
	`CREATE TABLE IF NOT EXISTS late_records (
	source_partition INT          NOT NULL,
	source_offset    BIGINT       NOT NULL,
	pboxid           VARCHAR(64)  NOT NULL,
	event_time       DATETIME(3)  NOT NULL,
	watermark        DATETIME(3)  NOT NULL,
	reason           VARCHAR(255) NOT NULL,
	payload          MEDIUMBLOB   NOT NULL,
	payload_bytes    BIGINT       NOT NULL,
	epoch            BIGINT UNSIGNED NOT NULL DEFAULT 0,
	PRIMARY KEY (source_partition, source_offset)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}`,
	`CREATE TABLE IF NOT EXISTS dead_letters (
	source_partition INT          NOT NULL,
	source_offset    BIGINT       NOT NULL,
	reason           VARCHAR(255) NOT NULL,
	payload          MEDIUMBLOB   NOT NULL,
	payload_bytes    BIGINT       NOT NULL,
	epoch            BIGINT UNSIGNED NOT NULL DEFAULT 0,
	PRIMARY KEY (source_partition, source_offset)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}`,
	`CREATE TABLE IF NOT EXISTS rejected_rows (
	source_table  VARCHAR(64)  NOT NULL,
	pboxid        VARCHAR(64)  NOT NULL,
	start_ms      BIGINT       NOT NULL,
	reason        VARCHAR(255) NOT NULL,
	payload       MEDIUMBLOB   NOT NULL,
	payload_bytes BIGINT       NOT NULL,
	epoch         BIGINT UNSIGNED NOT NULL DEFAULT 0,
	PRIMARY KEY (source_table, pboxid, start_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}`,
	`CREATE OR REPLACE VIEW daily_work_time AS
SELECT pboxid, DATE(period_start) AS day, COUNT(*) AS periods, SUM(duration_s) AS seconds
FROM work_periods GROUP BY pboxid, DATE(period_start)`,
}

// Open connects, creates the database if missing, the tables and view if
// missing, and the daily partitions of today and the days ahead. It checks
// that max_allowed_packet can carry a row with a payload of
// Config.MaxPayloadBytes, and that an existing readings table is
// partitioned as described above. A second Open is a no-op; Open after
// Close returns ErrClosed.
func (s *MySQL) Open(ctx context.Context) error {
	return s.e.open(ctx, func(ctx context.Context) (*sql.DB, error) {
		db, err := s.connect(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.setup(ctx, db); err != nil {
			db.Close()
			return nil, fmt.Errorf("sinks: mysql %s: %w", s.dsn.DBName, err)
		}
		return db, nil
	})
}

// connect opens the pool and pings, creating the database if it is missing.
func (s *MySQL) connect(ctx context.Context) (*sql.DB, error) {
	db, err := sql.Open("mysql", s.dsn.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("sinks: mysql: %w", err)
	}
	// The flush's connections, and one for partition DDL.
	db.SetMaxOpenConns(max(4, s.e.conns+1))
	db.SetMaxIdleConns(max(4, s.e.conns+1))
	db.SetConnMaxLifetime(5 * time.Minute)
	err = db.PingContext(ctx)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1049 { // ER_BAD_DB_ERROR: unknown database
		err = s.createDatabase(ctx)
		if err == nil {
			err = db.PingContext(ctx)
		}
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sinks: mysql %s@%s/%s: %w", s.dsn.User, s.dsn.Addr, s.dsn.DBName, err)
	}
	return db, nil
}

func (s *MySQL) createDatabase(ctx context.Context) error {
	c := s.dsn.Clone()
	c.DBName = ""
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	name := strings.ReplaceAll(s.dsn.DBName, "`", "``")
	_, err = db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+name+"` CHARACTER SET utf8mb4")
	return err
}

func (s *MySQL) setup(ctx context.Context, db *sql.DB) error {
	var maxPacket int
	if err := db.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(&maxPacket); err != nil {
		return err
	}
	// A statement sent as text may double every payload byte (escaping).
	hard := maxPacket - 64<<10
	s.e.d.stmtBytes = max(MinBatchBytes, min(hard, s.e.cfg.BatchBytes))
	if need := 2*s.e.cfg.MaxPayloadBytes + 4*maxReasonChars*2 + 4096; need > hard {
		return fmt.Errorf("max_allowed_packet is %d bytes; a row with a payload of MaxPayloadBytes=%d needs statements of %d bytes: raise max_allowed_packet above %d or lower MaxPayloadBytes",
			maxPacket, s.e.cfg.MaxPayloadBytes, need, need+64<<10)
	}
	coll, err := binaryCollation(ctx, db)
	if err != nil {
		return err
	}
	today := floorDiv(s.now().UnixMilli(), msPerDay)
	fill := strings.NewReplacer("{collation}", coll, "{today}", dayString(today))
	for _, q := range mysqlSchema {
		if _, err := db.ExecContext(ctx, fill.Replace(q)); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	if err := mysqlMigrate(ctx, db); err != nil {
		return err
	}
	s.db = db
	s.covered = map[int64]bool{}
	if err := s.loadLayout(ctx); err != nil {
		return err
	}
	wanted := make([]int64, 0, s.e.cfg.PartitionDaysAhead+1)
	for d := today; d <= today+int64(s.e.cfg.PartitionDaysAhead); d++ {
		wanted = append(wanted, d)
	}
	return s.splitDays(ctx, wanted)
}

// mysqlMigrate adds the epoch column to the tables of a database created
// by an eddy without fencing (their rows get epoch 0). Several sinks may
// race to do it: a duplicate column is success.
func mysqlMigrate(ctx context.Context, db *sql.DB) error {
	for _, td := range tableDefs {
		var n int
		err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?",
			td.name, epochCol).Scan(&n)
		if err != nil {
			return fmt.Errorf("migrate schema: %w", err)
		}
		if n > 0 {
			continue
		}
		_, err = db.ExecContext(ctx, "ALTER TABLE `"+td.name+"` ADD COLUMN `epoch` BIGINT UNSIGNED NOT NULL DEFAULT 0")
		var me *mysql.MySQLError
		if err != nil && !(errors.As(err, &me) && me.Number == 1060) { // ER_DUP_FIELDNAME
			return fmt.Errorf("migrate schema: add column epoch to %s: %w", td.name, err)
		}
	}
	return nil
}

// mysqlRowError reports whether err is MySQL/MariaDB refusing a row's
// values: out of range (1264, 1690), a bad time (1292), a bad or truncated
// value (1265, 1366, 1367), data too long (1406), NULL in a NOT NULL column
// (1048), no partition for the value (1526), a CHECK constraint (3819,
// 4025).
func mysqlRowError(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1048, 1264, 1265, 1292, 1366, 1367, 1406, 1526, 1690, 3819, 4025:
		return true
	}
	return false
}

// mysqlDeadlock reports whether err is a transaction chosen as a deadlock
// victim (1213) or a lock wait timeout (1205).
func mysqlDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// mysqlCannotPrepare reports whether err is the server refusing to
// prepare a statement: max_prepared_stmt_count reached (1461) or the
// command not supported (1295, e.g. behind a proxy).
func mysqlCannotPrepare(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1461 || me.Number == 1295)
}

// mysqlStaleStmt reports whether err says a prepared statement is gone
// (unknown statement handler, 1243) or must be prepared again (1615,
// after table changes the server could not re-prepare it for).
func mysqlStaleStmt(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1243 || me.Number == 1615)
}

// binaryCollation picks a binary utf8mb4 collation without trailing-space
// padding if the server has one.
func binaryCollation(ctx context.Context, db *sql.DB) (string, error) {
	for _, c := range []string{"utf8mb4_nopad_bin", "utf8mb4_0900_bin"} {
		var n int
		err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.COLLATIONS WHERE COLLATION_NAME = ?", c).Scan(&n)
		if err != nil {
			return "", err
		}
		if n > 0 {
			return c, nil
		}
	}
	return "utf8mb4_bin", nil
}

// loadLayout reads the partitions of readings into s.layout.
func (s *MySQL) loadLayout(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT PARTITION_NAME, COALESCE(PARTITION_METHOD, ''), COALESCE(PARTITION_EXPRESSION, ''), COALESCE(PARTITION_DESCRIPTION, '')
FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'readings' ORDER BY PARTITION_ORDINAL_POSITION`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var l partLayout
	last := ""
	for rows.Next() {
		var name sql.NullString
		var method, expr, desc string
		if err := rows.Scan(&name, &method, &expr, &desc); err != nil {
			return err
		}
		if !name.Valid || method != "RANGE COLUMNS" || !strings.Contains(expr, "event_time") {
			return fmt.Errorf("table readings exists but is not PARTITION BY RANGE COLUMNS(event_time) (found %q on %q): drop or rename it, eddy creates it", method, expr)
		}
		if last != "" {
			day, err := parsePartBound(last)
			if err != nil {
				return fmt.Errorf("table readings: %w", err)
			}
			l.bounds = append(l.bounds, day)
		}
		l.names = append(l.names, name.String)
		last = desc
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if last != "MAXVALUE" {
		return fmt.Errorf("table readings has no MAXVALUE partition last (found %q): eddy needs its catch-all partition p_future", last)
	}
	s.layout = l
	return nil
}

// ensureReadingPartitions is the engine's beforeWrite hook: it gives each
// event day of the pending readings, and the days ahead of it, a partition
// of its own. Failures are counted and otherwise ignored: the rows still
// land in a wider partition.
func (s *MySQL) ensureReadingPartitions(ctx context.Context, sel *selection) {
	var days, wanted []int64
	prev := int64(-noBound)
	for _, g := range sel[tReadings] {
		for i := g.lo; i < g.hi; i++ {
			d := floorDiv(g.rows.Readings[i].EventTime, msPerDay)
			if d == prev || s.covered[d] || slices.Contains(days, d) {
				prev = d
				continue
			}
			prev = d
			days = append(days, d)
			for a := d; a <= d+int64(s.e.cfg.PartitionDaysAhead); a++ {
				wanted = append(wanted, a)
			}
		}
	}
	if len(wanted) == 0 {
		return
	}
	slices.Sort(wanted)
	// A day is not tried again once done, or once it failed for a reason
	// other than the caller's context (a failing DDL must not slow every
	// batch down).
	if err := s.splitDays(ctx, wanted); err == nil || ctx.Err() == nil {
		for _, d := range days {
			s.covered[d] = true
		}
	}
}

// splitDays runs the reorganisations that give the wanted days (sorted)
// partitions of their own. After a failed statement (another process may
// have changed the partitions) it reloads the layout and tries once more.
func (s *MySQL) splitDays(ctx context.Context, wanted []int64) error {
	wanted = slices.Compact(wanted)
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		err = nil
		for _, r := range s.layout.plan(wanted, s.e.cfg.MaxPartitions) {
			if _, err = s.db.ExecContext(ctx, r.sql()); err != nil {
				break
			}
		}
		if lerr := s.loadLayout(ctx); lerr != nil && err == nil {
			err = lerr
		}
		if err == nil {
			return nil
		}
	}
	s.e.m.partitionErrors.Inc()
	return fmt.Errorf("create daily partitions of readings: %w", err)
}

// Write buffers copies of the rows of b under NoPartition at epoch 0 (see
// WriteEpoch, whose rules apply), and writes the buffer once
// Config.BatchRows rows are buffered.
func (s *MySQL) Write(ctx context.Context, b *Batch) error { return s.e.write(ctx, NoPartition, 0, b) }

// WriteEpoch implements EpochWriter: it buffers copies of the rows of b as
// written by partition p under lease epoch, and writes the buffer once
// Config.BatchRows rows are buffered.
func (s *MySQL) WriteEpoch(ctx context.Context, p int32, epoch uint64, b *Batch) error {
	return s.e.write(ctx, p, epoch, b)
}

// Drop implements EpochWriter.
func (s *MySQL) Drop(p int32) int { return s.e.drop(p) }

// SetLeaseGuard implements EpochWriter.
func (s *MySQL) SetLeaseGuard(valid func(p int32, epoch uint64) bool) { s.e.setGuard(valid) }

// SetBackpressureHook implements EpochWriter.
func (s *MySQL) SetBackpressureHook(fn func(p int32, waiting bool)) { s.e.setBackpressure(fn) }

// Flush writes every buffered row and returns when it is committed: the
// tables in up to Config.Conns transactions in parallel, each table's rows
// in one of them (rows the store refuses are isolated
// and replaced by their rejections; see ReasonSinkRejected). On error the
// rows of the transactions that failed stay buffered for the next Flush
// (the others' are committed and leave the buffer).
func (s *MySQL) Flush(ctx context.Context) error { return s.e.flush(ctx) }

// Close writes the buffered rows (within 30 s) and closes the connections.
// It is idempotent; the error reports rows it had to drop.
func (s *MySQL) Close() error { return s.e.close(30 * time.Second) }
