package pgtest

import (
	"testing"

	"github.com/eddy-iot/eddy/tests/dbtest"
)

func TestURLGivesFreshDatabase(t *testing.T) {
	dbtest.CheckFresh(t, URL, engine.Open, dbtest.URLDBName, dbtest.FreshQueries{
		Current:     "SELECT current_database()",
		Tables:      "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
		CreateTable: "CREATE TABLE t (x INT)",
	})
}

// TestUnreachableServerFails: with EnvDSN pointing at a closed port (or not
// a postgres:// URL), URL fails the test without showing the password.
func TestUnreachableServerFails(t *testing.T) {
	bogus := EnvDSN + "=postgres://eddy:s3cret@127.0.0.1:1/postgres?sslmode=disable"
	dbtest.CheckNoServer(t, URL, "pgtest: no PostgreSQL server: postgres://eddy:xxxxx@127.0.0.1:1/postgres", "s3cret", []dbtest.NoServerCase{
		{Env: []string{bogus, "CI="}},
		{Env: []string{bogus, "CI=true"}},
	})
	dbtest.CheckNoServer(t, URL, "mysql://eddy:xxxxx@127.0.0.1:1/: not a postgres:// URL", "s3cret", []dbtest.NoServerCase{
		{Env: []string{EnvDSN + "=mysql://eddy:s3cret@127.0.0.1:1/", "CI="}},
	})
}
