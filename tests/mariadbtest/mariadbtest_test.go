package mariadbtest

import (
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/eddy-iot/eddy/tests/dbtest"
)

func TestDSNGivesFreshDatabase(t *testing.T) {
	dbtest.CheckFresh(t, DSN, engine.Open, func(dsn string) string {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.DBName
	}, dbtest.FreshQueries{
		Current:     "SELECT DATABASE()",
		Tables:      "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()",
		CreateTable: "CREATE TABLE t (x INT)",
	})
}

// TestUnreachableServerFails: with EnvDSN pointing at a closed port, DSN
// fails the test (CI or not) without showing the password.
func TestUnreachableServerFails(t *testing.T) {
	bogus := EnvDSN + "=eddy:s3cret@tcp(127.0.0.1:1)/"
	dbtest.CheckNoServer(t, DSN, "mariadbtest: no MariaDB/MySQL server: eddy:xxx@tcp(127.0.0.1:1)/", "s3cret", []dbtest.NoServerCase{
		{Env: []string{bogus, "CI="}},
		{Env: []string{bogus, "CI=true"}},
	})
	dbtest.CheckNoServer(t, DSN, "no MariaDB/MySQL server: (unparsable DSN): bad DSN", "s3cret", []dbtest.NoServerCase{
		{Env: []string{EnvDSN + "=eddy:s3cret@tcp(127.0.0.1:1", "CI="}},
	})
}

func TestRedactHidesPassword(t *testing.T) {
	for _, in := range []string{"eddy:s3cret@tcp(127.0.0.1:3306)/db?timeout=3s", "eddy:s3cret@tcp(127.0.0.1:3306"} {
		if got := redact(in); strings.Contains(got, "s3cret") {
			t.Errorf("redact(%q) = %q", in, got)
		}
	}
	if got := redact("eddy:s3cret@tcp(127.0.0.1:3306)/"); got != "eddy:xxx@tcp(127.0.0.1:3306)/" {
		t.Errorf("redact = %q", got)
	}
}
