package chtest

import (
	"strings"
	"testing"

	"github.com/eddy-iot/eddy/tests/dbtest"
)

func TestURLGivesFreshDatabase(t *testing.T) {
	dbtest.CheckFresh(t, URL, Open, dbtest.URLDBName, dbtest.FreshQueries{
		Current:     "SELECT currentDatabase()",
		Tables:      "SELECT count() FROM system.tables WHERE database = currentDatabase()",
		CreateTable: "CREATE TABLE t (x Int32) ENGINE = Memory",
	})
}

// TestUnreachableServerFails: with EnvURL pointing at a closed port (or not
// a clickhouse:// URL), URL fails the test without showing the password.
func TestUnreachableServerFails(t *testing.T) {
	bogus := EnvURL + "=clickhouse://eddy:s3cret@127.0.0.1:1/default"
	dbtest.CheckNoServer(t, URL, "chtest: no ClickHouse server: clickhouse://eddy:xxxxx@127.0.0.1:1/default", "s3cret", []dbtest.NoServerCase{
		{Env: []string{bogus, "CI="}},
		{Env: []string{bogus, "CI=true"}},
	})
	dbtest.CheckNoServer(t, URL, "postgres://eddy:xxxxx@127.0.0.1:1/: not a clickhouse:// URL", "s3cret", []dbtest.NoServerCase{
		{Env: []string{EnvURL + "=postgres://eddy:s3cret@127.0.0.1:1/", "CI="}},
	})
}

func TestDSN(t *testing.T) {
	got, err := DSN("clickhouse://eddy:s3cret@127.0.0.1/db1")
	if err != nil {
		t.Fatal(err)
	}
	if want := "tcp://127.0.0.1:9000?database=db1&password=s3cret&read_timeout=60&timeout=5&username=eddy"; got != want {
		t.Errorf("DSN = %q, want %q", got, want)
	}
	if _, err := DSN("clickhouse://eddy:s3cret@/db1"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("DSN without a host: err %v, want one without the password", err)
	}
}
