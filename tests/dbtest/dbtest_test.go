package dbtest

import (
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestName(t *testing.T) {
	valid := regexp.MustCompile(`^eddyt_[a-z0-9_]*_[0-9a-f]{12}$`)
	long := "TestVeryLong/sub test/with-ÄÖÜ-and many many many words in it"
	for _, max := range []int{64, 63, 20} {
		for _, in := range []string{"", "TestX", long} {
			got := Name(in, max)
			if !valid.MatchString(got) || len(got) > max {
				t.Errorf("Name(%q, %d) = %q: not a safe name of at most %d bytes", in, max, got, max)
			}
			if Name(in, max) == got {
				t.Errorf("Name(%q, %d) twice gave the same name", in, max)
			}
		}
	}
	if got := Name("TestX/a-b", 64); !strings.HasPrefix(got, "eddyt_testx_a_b_") {
		t.Errorf("Name(TestX/a-b) = %q, want it to start eddyt_testx_a_b_", got)
	}
	if got := Name(long, 64); len(got) != 6+40+1+12 {
		t.Errorf("Name(long, 64) = %q: want the test name cut to 40 bytes", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("Name(x, 19) did not panic")
		}
	}()
	Name("x", 19)
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://eddy:s3cret@127.0.0.1:5432/postgres?sslmode=disable": "postgres://eddy:xxxxx@127.0.0.1:5432/postgres?sslmode=disable",
		"clickhouse://eddy@127.0.0.1:19000/default":                      "clickhouse://eddy@127.0.0.1:19000/default",
		"postgres://eddy:s3cret@[::1/":                                   "(unparsable URL)",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestURLWithDB(t *testing.T) {
	got := URLWithDB("postgres://eddy:eddy@127.0.0.1:5432/postgres?sslmode=disable", "eddyt_x_0a")
	if want := "postgres://eddy:eddy@127.0.0.1:5432/eddyt_x_0a?sslmode=disable"; got != want {
		t.Errorf("URLWithDB = %q, want %q", got, want)
	}
}

// noServer is an engine whose every candidate is refused, so Database
// exercises only the skip-or-fail rules.
var noServer = &Engine{
	Pkg:     "dbtesttest",
	Kind:    "Fake",
	Env:     "DBTEST_FAKE_DSN",
	Local:   []string{"fake://eddy:s3cret@127.0.0.1:1/", "fake://root:s3cret@127.0.0.1:2/"},
	MaxName: 64,
	Server: func(dsn string) (string, error) {
		return "", errors.New("refused")
	},
	Open:   func(string) (*sql.DB, error) { return nil, errors.New("unused") },
	WithDB: URLWithDB,
	Redact: RedactURL,
}

// TestNoServer: without a server Database skips, except under CI or with
// the engine's variable set; every candidate is named, none with its
// password.
func TestNoServer(t *testing.T) {
	want := "dbtesttest: no Fake server: fake://eddy:xxxxx@127.0.0.1:1/: refused; fake://root:xxxxx@127.0.0.1:2/: refused. Set DBTEST_FAKE_DSN"
	CheckNoServer(t, noServer.Database, "no Fake server", "s3cret", []NoServerCase{
		{Env: []string{"DBTEST_FAKE_DSN=", "CI="}, Skip: true},
		{Env: []string{"DBTEST_FAKE_DSN=", "CI=false"}, Skip: true},
		{Env: []string{"DBTEST_FAKE_DSN=", "CI=true"}},
		{Env: []string{"DBTEST_FAKE_DSN=", "CI=1"}},
		{Env: []string{"DBTEST_FAKE_DSN=fake://eddy:s3cret@127.0.0.1:3/", "CI="}},
	})
	CheckNoServer(t, noServer.Database, want, "s3cret", []NoServerCase{{Env: []string{"DBTEST_FAKE_DSN=", "CI=true"}}})
	CheckNoServer(t, noServer.Database, fmt.Sprintf("%s: %s", "fake://eddy:xxxxx@127.0.0.1:3/", "refused"), "s3cret",
		[]NoServerCase{{Env: []string{"DBTEST_FAKE_DSN=fake://eddy:s3cret@127.0.0.1:3/"}}})
}

func TestURLServer(t *testing.T) {
	server := URLServer("postgres", "postgresql")
	for in, want := range map[string]string{
		"postgres://eddy:s3cret@127.0.0.1/postgres":   "",
		"postgresql://eddy:s3cret@127.0.0.1/postgres": "",
		"mysql://eddy:s3cret@127.0.0.1/":              "not a postgres:// URL",
		"postgres://eddy:s3cret@[::1/":                "not a postgres:// URL",
	} {
		got, err := server(in)
		switch {
		case want == "" && (err != nil || got != in):
			t.Errorf("URLServer(%q) = %q, %v; want it unchanged", in, got, err)
		case want != "" && (err == nil || err.Error() != want):
			t.Errorf("URLServer(%q): err %v, want %q", in, err, want)
		}
	}
	if got := URLDBName("clickhouse://eddy@127.0.0.1:19000/eddyt_x_0a"); got != "eddyt_x_0a" {
		t.Errorf("URLDBName = %q", got)
	}
}
