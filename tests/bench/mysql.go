package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
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
	mc, err := mysql.ParseDSN(mysqlDSN)
	if err != nil {
		return 0, fmt.Errorf("--mysql-dsn: %w", err)
	}
	mc.DBName = ""
	admin, err := sql.Open("mysql", mc.FormatDSN())
	if err != nil {
		return 0, err
	}
	defer admin.Close()
	name := fmt.Sprintf("eddy_bench_%d_%d", os.Getpid(), run)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		return 0, fmt.Errorf("mysql variant needs a MariaDB/MySQL server (--mysql-dsn or EDDY_MYSQL_DSN): %w", err)
	}
	defer admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS `"+name+"`")
	mc.DBName = name
	scfg := sinks.DefaultConfig()
	scfg.BatchRows = batchRows
	scfg.Conns = mysqlConns
	scfg.BatchBytes = mysqlBatchBytes
	s, err := sinks.NewMySQL(mc.FormatDSN(), scfg, nil)
	if err != nil {
		return 0, err
	}
	d, err := runJob(ctx, brokers, s, n)
	if err != nil {
		return 0, err
	}
	var readings, dead int64
	q := "SELECT (SELECT COUNT(*) FROM `" + name + "`.readings), (SELECT COUNT(*) FROM `" + name + "`.dead_letters)"
	if err := admin.QueryRowContext(ctx, q).Scan(&readings, &dead); err != nil {
		return 0, err
	}
	if readings+dead != n {
		return 0, fmt.Errorf("mysql: %d readings and %d dead letters stored, want %d records", readings, dead, n)
	}
	return d, nil
}
