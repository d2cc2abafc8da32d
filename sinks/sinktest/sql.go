package sinktest

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
)

// ReadAll reads every row of the five tables of a SQLite, MySQL or PostgreSQL sink
// database back into a sinks.Batch, each table ordered by its key: readings by
// (source_partition, source_offset), windows and work periods by (pboxid,
// start), late records and dead letters by (source_partition,
// source_offset). NULL coordinates come back as NaN, payloads as stored
// (possibly cut; see sinks.Config.MaxPayloadBytes). It loads everything into
// memory: for tests, comparisons against a reference, and small tools.
//
// db is opened with sql.Open("sqlite", sinks.SQLiteDSN(path)) or
// sql.Open("mysql", dsn) or sql.Open("pgx", url) (driver
// jackc/pgx/v5/stdlib); MySQL times are read correctly without
// parseTime, and with parseTime when loc is UTC (the driver's default).
// The queries are plain SQL all three accept (no quoted identifiers, no
// placeholders).
func ReadAll(ctx context.Context, db *sql.DB) (*sinks.Batch, error) { return readAll(ctx, db, "") }

// ReadClickHouse is ReadAll for a ClickHouse sink database (db opened with
// sinks.OpenClickHouseDB, driver ClickHouse/clickhouse-go v1): every
// table is read with FINAL, so rows of a key that background merges have
// not collapsed yet come back once, the row of the highest epoch (the last
// inserted of those). Times are its Int64 Unix ms.
func ReadClickHouse(ctx context.Context, db *sql.DB) (*sinks.Batch, error) {
	return readAll(ctx, db, " FINAL")
}

// readAll is ReadAll with final after each table name.
func readAll(ctx context.Context, db *sql.DB, final string) (*sinks.Batch, error) {
	out := &sinks.Batch{}
	err := readRows(ctx, db, "SELECT source_partition, source_offset, pboxid, event_time, metric, latitude, longitude, company, site FROM readings"+final+" ORDER BY source_partition, source_offset",
		func(sc func(...any) error) error {
			var r operators.Reading
			var lat, lon sql.NullFloat64
			if err := sc(&r.Partition, &r.Offset, &r.PboxID, msTime{&r.EventTime}, &r.Metric, &lat, &lon, &r.Company, &r.Site); err != nil {
				return err
			}
			r.Latitude, r.Longitude = nanIfNull(lat), nanIfNull(lon)
			out.Readings = append(out.Readings, r)
			return nil
		})
	if err != nil {
		return nil, err
	}
	err = readRows(ctx, db, "SELECT pboxid, window_start, window_end, count, sum, min, max, avg, latitude, longitude, company, site FROM window_aggregates"+final+" ORDER BY pboxid, window_start",
		func(sc func(...any) error) error {
			var w operators.WindowAggregate
			var lat, lon sql.NullFloat64
			if err := sc(&w.PboxID, msTime{&w.Start}, msTime{&w.End}, &w.Count, &w.Sum, &w.Min, &w.Max, &w.Avg, &lat, &lon, &w.Company, &w.Site); err != nil {
				return err
			}
			w.Latitude, w.Longitude = nanIfNull(lat), nanIfNull(lon)
			out.Windows = append(out.Windows, w)
			return nil
		})
	if err != nil {
		return nil, err
	}
	err = readRows(ctx, db, "SELECT pboxid, period_start, period_end, samples, avg_metric, max_metric, company, site FROM work_periods"+final+" ORDER BY pboxid, period_start",
		func(sc func(...any) error) error {
			var p operators.WorkPeriod
			if err := sc(&p.PboxID, msTime{&p.Start}, msTime{&p.End}, &p.Samples, &p.AvgMetric, &p.MaxMetric, &p.Company, &p.Site); err != nil {
				return err
			}
			out.WorkPeriods = append(out.WorkPeriods, p)
			return nil
		})
	if err != nil {
		return nil, err
	}
	err = readRows(ctx, db, "SELECT source_partition, source_offset, pboxid, event_time, watermark, reason, payload FROM late_records"+final+" ORDER BY source_partition, source_offset",
		func(sc func(...any) error) error {
			var l operators.LateRecord
			if err := sc(&l.Partition, &l.Offset, &l.PboxID, msTime{&l.EventTime}, msTime{&l.Watermark}, &l.Reason, &l.Payload); err != nil {
				return err
			}
			out.Late = append(out.Late, l)
			return nil
		})
	if err != nil {
		return nil, err
	}
	err = readRows(ctx, db, "SELECT source_partition, source_offset, reason, payload FROM dead_letters"+final+" ORDER BY source_partition, source_offset",
		func(sc func(...any) error) error {
			var d operators.DeadLetter
			if err := sc(&d.Partition, &d.Offset, &d.Reason, &d.Payload); err != nil {
				return err
			}
			out.DeadLetters = append(out.DeadLetters, d)
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func readRows(ctx context.Context, db *sql.DB, q string, row func(scan func(...any) error) error) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("sinktest: read: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows.Scan); err != nil {
			return fmt.Errorf("sinktest: read: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sinktest: read: %w", err)
	}
	return nil
}

func nanIfNull(f sql.NullFloat64) float64 {
	if !f.Valid {
		return math.NaN()
	}
	return f.Float64
}

// msTime scans a SQL time (time.Time, int64 Unix ms, or text "YYYY-MM-DD HH:MM:SS[.f]"
// in UTC) into Unix ms.
type msTime struct{ ms *int64 }

func (t msTime) Scan(src any) error {
	switch v := src.(type) {
	case int64: // ClickHouse: Unix ms
		*t.ms = v
		return nil
	case time.Time:
		*t.ms = v.UnixMilli()
		return nil
	case string:
		return t.parse(v)
	case []byte:
		return t.parse(string(v))
	}
	return fmt.Errorf("cannot scan %T into a time", src)
}

func (t msTime) parse(s string) error {
	ms, err := parseSQLTime(s)
	if err != nil {
		return err
	}
	*t.ms = ms
	return nil
}

// parseSQLTime parses "YYYY-MM-DD HH:MM:SS[.fff...]" (or with 'T') as UTC
// and returns Unix ms (fraction digits beyond ms are dropped).
func parseSQLTime(s string) (int64, error) {
	bad := fmt.Errorf("bad SQL time %q", s)
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != ' ' && s[10] != 'T') || s[13] != ':' || s[16] != ':' {
		return 0, bad
	}
	num := func(a, b int) int64 {
		n, err := strconv.ParseInt(s[a:b], 10, 64)
		if err != nil {
			n = -1
		}
		return n
	}
	y, mo, d, h, mi, sec := num(0, 4), num(5, 7), num(8, 10), num(11, 13), num(14, 16), num(17, 19)
	if y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59 {
		return 0, bad
	}
	var frac int64
	if rest := s[19:]; rest != "" {
		if rest[0] != '.' || len(rest) < 2 || strings.Trim(rest[1:], "0123456789") != "" {
			return 0, bad
		}
		f := (rest[1:] + "00")[:3]
		frac, _ = strconv.ParseInt(f, 10, 64)
	}
	return time.Date(int(y), time.Month(mo), int(d), int(h), int(mi), int(sec), 0, time.UTC).UnixMilli() + frac, nil
}
