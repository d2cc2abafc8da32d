package oracle

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // driver "sqlite"

	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/secret"
)

// Table names of eddy's SQL sinks (the sinks package's).
const (
	TableReadings    = sinks.TableReadings
	TableWindows     = sinks.TableWindows
	TableWorkPeriods = sinks.TableWorkPeriods
	TableLateRecords = sinks.TableLate
	TableDeadLetters = sinks.TableDeadLetters
)

// LoadSQLite reads the outputs of a job from eddy's SQLite sink file at path
// (opened read-only). Times are TEXT "YYYY-MM-DD HH:MM:SS.sss" UTC.
func LoadSQLite(ctx context.Context, path string) (*Result, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return nil, fmt.Errorf("oracle: sqlite %s: %w", path, err)
	}
	defer db.Close()
	return Load(ctx, db)
}

// LoadMySQL reads the outputs of a job from eddy's MySQL sink. dsn is a
// go-sql-driver/mysql DSN ("user:pass@tcp(host:3306)/db"); parseTime=true
// and loc=UTC are forced.
func LoadMySQL(ctx context.Context, dsn string) (*Result, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("oracle: mysql DSN: %w", err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("oracle: mysql: %w", err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	return Load(ctx, db)
}

// LoadPostgres reads the outputs of a job from eddy's PostgreSQL sink. url
// is a pgx URL ("postgres://user:pass@host:5432/db?sslmode=disable");
// errors do not show the password.
func LoadPostgres(ctx context.Context, url string) (*Result, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("oracle: postgres URL %s: %w", secret.RedactURL(url), secret.RedactError(err))
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	res, err := Load(ctx, db)
	return res, secret.RedactError(err)
}

// Load reads the outputs of a job from an open SQLite, MySQL or PostgreSQL database:
// the row counts of readings, late_records and dead_letters, every row of
// window_aggregates and work_periods (sorted as Compute sorts them), and the
// partition, offset and reason of every dead letter (DeadLetterRecords,
// sorted by partition and offset; Line is 0). NULL
// latitude/longitude become NaN, NULL company/site "".
func Load(ctx context.Context, db *sql.DB) (*Result, error) { return load(ctx, db, "") }

// LoadClickHouse reads the outputs of a job from eddy's ClickHouse sink.
// url is the sink's clickhouse://user:pass@host:9000/db; every table is
// read with FINAL (one row per key, the one of the highest epoch), times
// are Int64 Unix ms. Errors do not show the password.
func LoadClickHouse(ctx context.Context, url string) (*Result, error) {
	db, err := sinks.OpenClickHouseDB(url)
	if err != nil {
		return nil, fmt.Errorf("oracle: %w", err)
	}
	defer db.Close()
	res, err := load(ctx, db, " FINAL")
	return res, secret.RedactError(err)
}

// load is Load with final after every table name.
func load(ctx context.Context, db *sql.DB, final string) (*Result, error) {
	res := &Result{}
	for _, c := range []struct {
		table string
		dst   *int64
	}{{TableReadings, &res.Readings}, {TableLateRecords, &res.Late}, {TableDeadLetters, &res.DeadLetters}} {
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+c.table+final).Scan(c.dst); err != nil {
			return nil, fmt.Errorf("oracle: count %s: %w", c.table, err)
		}
	}
	res.Records = res.Readings + res.Late + res.DeadLetters

	rows, err := db.QueryContext(ctx, "SELECT pboxid, window_start, window_end, count, sum, min, max, avg,"+
		" latitude, longitude, company, site FROM "+TableWindows+final)
	if err != nil {
		return nil, fmt.Errorf("oracle: query %s: %w", TableWindows, err)
	}
	defer rows.Close()
	for rows.Next() {
		var w Window
		var start, end any
		var lat, lon sql.NullFloat64
		var company, site sql.NullString
		if err := rows.Scan(&w.PboxID, &start, &end, &w.Count, &w.Sum, &w.Min, &w.Max, &w.Avg, &lat, &lon, &company, &site); err != nil {
			return nil, fmt.Errorf("oracle: scan %s: %w", TableWindows, err)
		}
		if w.Start, err = sqlTime(start); err != nil {
			return nil, fmt.Errorf("oracle: %s.window_start: %w", TableWindows, err)
		}
		if w.End, err = sqlTime(end); err != nil {
			return nil, fmt.Errorf("oracle: %s.window_end: %w", TableWindows, err)
		}
		w.Latitude, w.Longitude = nullFloat(lat), nullFloat(lon)
		w.Company, w.Site = company.String, site.String
		res.Windows = append(res.Windows, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("oracle: read %s: %w", TableWindows, err)
	}

	prows, err := db.QueryContext(ctx, "SELECT pboxid, period_start, period_end, duration_s, samples, avg_metric, max_metric,"+
		" company, site FROM "+TableWorkPeriods+final)
	if err != nil {
		return nil, fmt.Errorf("oracle: query %s: %w", TableWorkPeriods, err)
	}
	defer prows.Close()
	for prows.Next() {
		var p WorkPeriod
		var start, end any
		var company, site sql.NullString
		if err := prows.Scan(&p.PboxID, &start, &end, &p.DurationS, &p.Samples, &p.AvgMetric, &p.MaxMetric, &company, &site); err != nil {
			return nil, fmt.Errorf("oracle: scan %s: %w", TableWorkPeriods, err)
		}
		if p.Start, err = sqlTime(start); err != nil {
			return nil, fmt.Errorf("oracle: %s.period_start: %w", TableWorkPeriods, err)
		}
		if p.End, err = sqlTime(end); err != nil {
			return nil, fmt.Errorf("oracle: %s.period_end: %w", TableWorkPeriods, err)
		}
		p.Company, p.Site = company.String, site.String
		res.WorkPeriods = append(res.WorkPeriods, p)
	}
	if err := prows.Err(); err != nil {
		return nil, fmt.Errorf("oracle: read %s: %w", TableWorkPeriods, err)
	}
	drows, err := db.QueryContext(ctx, "SELECT source_partition, source_offset, reason FROM "+TableDeadLetters+final+
		" ORDER BY source_partition, source_offset")
	if err != nil {
		return nil, fmt.Errorf("oracle: query %s: %w", TableDeadLetters, err)
	}
	defer drows.Close()
	for drows.Next() {
		var d DeadLetter
		if err := drows.Scan(&d.Partition, &d.Offset, &d.Reason); err != nil {
			return nil, fmt.Errorf("oracle: scan %s: %w", TableDeadLetters, err)
		}
		res.DeadLetterRecords = append(res.DeadLetterRecords, d)
	}
	if err := drows.Err(); err != nil {
		return nil, fmt.Errorf("oracle: read %s: %w", TableDeadLetters, err)
	}
	sortWindows(res.Windows)
	sortWorkPeriods(res.WorkPeriods)
	return res, nil
}

func nullFloat(v sql.NullFloat64) float64 {
	if !v.Valid {
		return math.NaN()
	}
	return v.Float64
}

// sqlTime converts a scanned time column to Unix ms: a time.Time (MySQL
// with parseTime, SQLite DATETIME columns), text "YYYY-MM-DD HH:MM:SS[.sss]"
// (UTC, "T" accepted), or an integer (taken as Unix ms).
func sqlTime(v any) (int64, error) {
	switch x := v.(type) {
	case time.Time:
		return x.UnixMilli(), nil
	case int64:
		return x, nil
	case []byte:
		return parseSQLTime(string(x))
	case string:
		return parseSQLTime(x)
	case nil:
		return 0, fmt.Errorf("NULL time")
	}
	return 0, fmt.Errorf("unexpected time value %T %v", v, v)
}

func parseSQLTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05", strings.Replace(s, "T", " ", 1), time.UTC)
	if err != nil {
		if t2, err2 := time.Parse(time.RFC3339Nano, s); err2 == nil {
			return t2.UnixMilli(), nil
		}
		return 0, fmt.Errorf("time %q: %w", s, err)
	}
	return t.UnixMilli(), nil
}
