package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/eddy-iot/eddy/sinks"
)

// The --mysql-dsn, --conns and --batch-bytes flags.
var (
	mysqlDSN        string
	mysqlConns      int
	mysqlBatchBytes int
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// runMySQL runs the job into a fresh database eddy_bench_<pid>_<run> on
// the server of mysqlDSN (dropped afterwards) and checks that every
// reading reached the readings table.
func runMySQL(ctx context.Context, brokers []string, n int64, run int) (time.Duration, error) {
	dsn, drop, err := freshMySQL(ctx, strconv.Itoa(run))
	if err != nil {
		return 0, fmt.Errorf("mysql variant: %w", err)
	}
	defer drop()
	s, err := sinks.NewMySQL(dsn, mysqlSinkConfig(), nil)
	if err != nil {
		return 0, err
	}
	d, err := runJob(ctx, brokers, s, n)
	if err != nil {
		return 0, err
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var readings, dead int64
	q := "SELECT (SELECT COUNT(*) FROM readings), (SELECT COUNT(*) FROM dead_letters)"
	if err := db.QueryRowContext(ctx, q).Scan(&readings, &dead); err != nil {
		return 0, err
	}
	if readings+dead != n {
		return 0, fmt.Errorf("mysql: %d readings and %d dead letters stored, want %d records", readings, dead, n)
	}
	return d, nil
}

// freshMySQL creates the database eddy_bench_<pid>_<tag> and returns its
// DSN and a function that drops it.
func freshMySQL(ctx context.Context, tag string) (string, func(), error) {
	mc, err := mysql.ParseDSN(mysqlDSN)
	if err != nil {
		return "", nil, fmt.Errorf("--mysql-dsn: %w", err)
	}
	mc.DBName = ""
	admin, err := sql.Open("mysql", mc.FormatDSN())
	if err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("eddy_bench_%d_%s", os.Getpid(), tag)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("needs a MariaDB/MySQL server (--mysql-dsn or EDDY_MYSQL_DSN): %w", err)
	}
	mc.DBName = name
	return mc.FormatDSN(), func() {
		admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS `"+name+"`")
		admin.Close()
	}, nil
}

// mysqlSinkConfig is the MySQL sink configuration of every mysql variant
// and latency target: the defaults with --batch-rows, --conns and
// --batch-bytes.
func mysqlSinkConfig() sinks.Config {
	scfg := sinks.DefaultConfig()
	scfg.BatchRows = batchRows
	scfg.Conns = mysqlConns
	scfg.BatchBytes = mysqlBatchBytes
	return scfg
}
