package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

// runEddy runs one eddy command line in process and returns everything it
// printed (stdout and stderr) and its error.
func runEddy(args ...string) (string, error) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err != nil {
		fmt.Fprintln(&out, "eddy:", err) // as main prints it
	}
	return out.String(), err
}

// TestNoPasswordInOutput runs eddy run (bounded, debug logs) into MariaDB
// with a user whose password is unique, once from the spec text and once
// through ${ENV}; then failing runs (a closed port, a DSN that does not
// parse) and eddy dev with a MySQL sink; then a cluster job with a
// literal password read back through eddy ctl job get and list. No output
// of any of them may contain the password.
func TestNoPasswordInOutput(t *testing.T) {
	pw := fmt.Sprintf("pw-%08x-Zq", rand.Uint32())
	envPW := fmt.Sprintf("envpw-%08x-Zq", rand.Uint32())
	dsn := mariadbtest.DSN(t)
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// A user with a unique password and no rights: it connects, then
	// fails (access denied to the database).
	user := fmt.Sprintf("eddy_pw_%08x", rand.Uint32())
	if _, err := admin.Exec(fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", user, pw)); err != nil {
		t.Fatalf("CREATE USER: %v (the test user needs the CREATE USER privilege)", err)
	}
	t.Cleanup(func() { admin.Exec(fmt.Sprintf("DROP USER '%s'@'%%'", user)) })
	t.Setenv("EDDY_TEST_MYSQL_PASSWORD", envPW)

	b, err := devbroker.Start(devbroker.Config{Partitions: 2, Topics: []string{"iot-topic"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := t.TempDir()
	writeSpec := func(name, sink string) string {
		p := filepath.Join(dir, name+".yaml")
		spec := fmt.Sprintf("name: %s\nsource:\n  brokers: [%q]\nsink: %q\n", name, b.Addrs()[0], sink)
		if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	target := fmt.Sprintf("tcp(%s)/%s", mc.Addr, mc.DBName)
	var all strings.Builder
	check := func(what, out string) {
		t.Helper()
		all.WriteString(out)
		for _, secret := range []string{pw, envPW} {
			if strings.Contains(out, secret) {
				t.Errorf("%s printed the password %s:\n%s", what, secret, out)
			}
		}
	}

	// A run that works, with the test server's own user: its
	// "user:password@" must never show (the password alone may be a
	// common word, e.g. eddy:eddy).
	if mc.Passwd == "" {
		t.Fatalf("the test server's DSN has no password; this test needs one")
	}
	good := *mc
	out, err := runEddy("run", "--bounded", "--log-level", "debug", "--metrics-addr", "", "--job",
		writeSpec("pw-spec", "mysql:"+good.FormatDSN()))
	if err != nil {
		t.Fatalf("eddy run with the password in the spec: %v\n%s", err, out)
	}
	check("eddy run (password in the spec)", out)
	if strings.Contains(out, mc.User+":"+mc.Passwd+"@") || !strings.Contains(out, "summary:") {
		t.Errorf("eddy run printed the DSN with its password, or no summary:\n%s", out)
	}

	// The unique password in the spec: access denied.
	out, err = runEddy("run", "--bounded", "--log-level", "debug", "--metrics-addr", "", "--job",
		writeSpec("pw-denied", fmt.Sprintf("mysql:%s:%s@%s", user, pw, target)))
	if err == nil {
		t.Errorf("eddy run as a user without rights succeeded:\n%s", out)
	}
	check("eddy run (access denied)", out)
	t.Logf("eddy run as a user without rights:\n%s", out)

	// The same password through ${ENV}, but wrong: access denied.
	out, err = runEddy("run", "--bounded", "--metrics-addr", "", "--job",
		writeSpec("pw-env", fmt.Sprintf("mysql:%s:${EDDY_TEST_MYSQL_PASSWORD}@%s", user, target)))
	if err == nil {
		t.Errorf("eddy run with a wrong password succeeded:\n%s", out)
	}
	check("eddy run (wrong password from ${ENV})", out)

	// A closed port, and a DSN that does not parse.
	out, err = runEddy("run", "--bounded", "--metrics-addr", "", "--job",
		writeSpec("pw-closed", fmt.Sprintf("mysql:%s:%s@tcp(127.0.0.1:1)/%s", user, pw, mc.DBName)))
	if err == nil || !strings.Contains(out, "xxxxx") {
		t.Errorf("eddy run against a closed port: %v, want an error with the masked DSN:\n%s", err, out)
	}
	check("eddy run (closed port)", out)
	out, err = runEddy("run", "--job", writeSpec("pw-bad", fmt.Sprintf("mysql:%s:%s@tcp(127.0.0.1:1", user, pw)))
	if err == nil {
		t.Errorf("eddy run with a bad DSN succeeded")
	}
	check("eddy run (bad DSN)", out)

	out, err = runEddy("dev", "--quiet", "--metrics-addr", "", "--data", writeCSV(t, dir),
		"--sink", fmt.Sprintf("mysql:%s:%s@tcp(127.0.0.1:1)/%s", user, pw, mc.DBName))
	if err == nil {
		t.Errorf("eddy dev against a closed port succeeded")
	}
	check("eddy dev (closed port)", out)
	if !strings.Contains(out, "sink:   mysql:"+user+":xxxxx@") {
		t.Errorf("eddy dev banner:\n%s", out)
	}

	// A cluster job whose spec has a literal password.
	node := startTestNode(t)
	addr := nodeHTTP(node)
	spec := writeSpec("pw-cluster", fmt.Sprintf("mysql:%s:%s@%s", user, pw, target))
	out, err = ctl(addr, "job", "submit", spec, "--partitions", "1")
	if err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	check("eddy ctl job submit", out)
	for _, args := range [][]string{{"job", "get", "pw-cluster"}, {"job", "get", "pw-cluster", "-o", "json"}, {"job", "list", "-o", "json"}} {
		out, err := ctl(addr, args...)
		if err != nil {
			t.Fatalf("eddy ctl %v: %v", args, err)
		}
		check(fmt.Sprint("eddy ctl ", args), out)
	}
	if !strings.Contains(all.String(), user+":xxxxx@") {
		t.Errorf("no masked DSN in any output")
	}
}

func writeCSV(t *testing.T, dir string) string {
	p := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(p, []byte("pboxid,event_time,metric\n1,2019-03-01T00:00:00,5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
