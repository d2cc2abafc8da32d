package faults

import (
	"bufio"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// privateMariaDB is a mariadbd of one test: its own datadir under
// t.TempDir(), its own port on 127.0.0.1, no grant tables (any user
// connects; nothing else listens there), stopped in t.Cleanup.
type privateMariaDB struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	dsn     string        // server DSN, no database
	args    []string      // of mariadbd, to restart it
	logPath string
}

func startMariaDB(t *testing.T) *privateMariaDB {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if out, err := exec.Command("mysql_install_db", "--no-defaults", "--user=root", "--datadir="+data,
		"--skip-test-db", "--auth-root-authentication-method=normal").CombinedOutput(); err != nil {
		t.Fatalf("mysql_install_db: %v\n%s", err, out)
	}
	addr := harness.FreeAddr(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	m := &privateMariaDB{dsn: "root@tcp(" + addr + ")/", logPath: filepath.Join(dir, "mariadbd.log"),
		args: []string{"--no-defaults", "--user=root", "--datadir=" + data,
			"--socket=" + filepath.Join(dir, "mysqld.sock"), "--pid-file=" + filepath.Join(dir, "mysqld.pid"),
			"--port=" + port, "--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-log-bin",
			"--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2", "--max-connections=200"}}
	m.start(t)
	t.Cleanup(func() {
		m.cmd.Process.Signal(syscall.SIGCONT)
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			m.cmd.Process.Kill()
			<-m.done
		}
	})
	db, err := sql.Open("mysql", m.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE eddy_faults"); err != nil {
		t.Fatal(err)
	}
	m.dsn += "eddy_faults"
	t.Logf("private mariadbd (pid %d) on %s, datadir %s", m.cmd.Process.Pid, addr, data)
	return m
}

// start starts mariadbd (again: InnoDB crash recovery after a kill) and
// waits until it answers.
func (m *privateMariaDB) start(t *testing.T) {
	t.Helper()
	bin, err := exec.LookPath("mariadbd")
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	m.cmd, m.done = cmd, done
	server, _, _ := strings.Cut(m.dsn, ")/")
	db, err := sql.Open("mysql", server+")/")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err = db.Ping(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(m.logPath)
			t.Fatalf("private mariadbd (%s) did not answer: %v\n%s", m.dsn, err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill SIGKILLs mariadbd and waits for it to exit.
func (m *privateMariaDB) kill(t *testing.T) {
	t.Helper()
	if err := m.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-m.done
}

// rssKB returns VmRSS of pid in kB (/proc/PID/status), 0 if unreadable.
func rssKB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb
		}
	}
	return 0
}

// TestStoppedMariaDB SIGSTOPs the sink's MariaDB server for a seeded
// 10–60 s while the job runs (connections stay open, nothing answers: a
// hung database, not a refused one), then SIGCONTs it. End: the tables equal
// the oracle. Prints every node's RSS before and during the outage.
func TestStoppedMariaDB(t *testing.T) {
	require(t, "mysql_install_db", "mariadbd")
	rng := seeded(t)
	db := startMariaDB(t)
	e := newEnv(t, envConfig{rng: rng, dsn: db.dsn, replayFor: 30 * time.Second, lateness: 30 * time.Second})
	e.startReplay()
	time.Sleep(between(rng, 3*time.Second, 6*time.Second))
	outage := between(rng, 10*time.Second, 60*time.Second)

	rss := func() string {
		var parts []string
		for _, n := range e.running() {
			parts = append(parts, fmt.Sprintf("%s %.1f MiB", n.ID, float64(rssKB(n.Pid()))/1024))
		}
		return strings.Join(parts, ", ")
	}
	peak := map[string]int64{}
	t.Logf("RSS before the outage: %s", rss())
	if err := db.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	t.Logf("SIGSTOP mariadbd for %s", outage.Round(time.Millisecond))
	for next := 5 * time.Second; time.Since(stopped) < outage; {
		for _, n := range e.running() {
			peak[n.ID] = max(peak[n.ID], rssKB(n.Pid()))
		}
		if time.Since(stopped) >= next {
			t.Logf("outage +%s: RSS %s", next, rss())
			next += 5 * time.Second
		}
		time.Sleep(min(500*time.Millisecond, outage-time.Since(stopped)+time.Millisecond))
	}
	if err := db.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, n := range e.c.Nodes {
		parts = append(parts, fmt.Sprintf("%s %.1f MiB", n.ID, float64(peak[n.ID])/1024))
	}
	t.Logf("SIGCONT mariadbd after %s; peak RSS during the outage: %s", time.Since(stopped).Round(time.Millisecond), strings.Join(parts, ", "))
	e.finish()
	t.Logf("RSS after the run: %s", rss())
}

// TestKilledMariaDB SIGKILLs the sink's MariaDB server twice while the job
// runs and restarts it after a seeded 3–15 s (connections break, new ones
// are refused, then the server comes back through InnoDB crash recovery).
// End: the tables equal the oracle, no row's epoch ever went down.
func TestKilledMariaDB(t *testing.T) {
	require(t, "mysql_install_db", "mariadbd")
	rng := seeded(t)
	db := startMariaDB(t)
	e := newEnv(t, envConfig{rng: rng, dsn: db.dsn, replayFor: 40 * time.Second, lateness: 30 * time.Second})
	audit := epochAudit(t, e.dsn)
	e.startReplay()
	for i := 1; i <= 2; i++ {
		time.Sleep(between(rng, 3*time.Second, 8*time.Second))
		down := between(rng, 3*time.Second, 15*time.Second)
		db.kill(t)
		t.Logf("kill %d: SIGKILL mariadbd, down for %s", i, down.Round(time.Millisecond))
		time.Sleep(down)
		began := time.Now()
		db.start(t)
		t.Logf("kill %d: mariadbd answers again after %s of crash recovery (pid %d)", i, time.Since(began).Round(time.Millisecond), db.cmd.Process.Pid)
	}
	e.finish()
	for _, a := range audit() {
		t.Errorf("epoch regressed: %s", a)
	}
}
