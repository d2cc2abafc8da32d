package e2e

import (
	"bytes"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// TestNodeJobEnrichesFromRaft runs the job inside `eddy node`: enrichment
// reads devices/<pboxid> from the node's Raft replica, and a change made
// through the API (valid from an event time just ahead of the input) is used
// by the running job within a second.
func TestNodeJobEnrichesFromRaft(t *testing.T) {
	broker, err := devbroker.Start(devbroker.Config{Listen: "127.0.0.1:0", Partitions: 4, Topics: []string{"iot-topic"}})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	dir := t.TempDir()
	db := filepath.Join(dir, "out.db")
	spec := filepath.Join(dir, "job.yaml")
	os.WriteFile(spec, []byte(fmt.Sprintf("source:\n  brokers: [%q]\nsink: %q\n", broker.Addrs()[0], "sqlite:"+db)), 0o644)

	httpAddr := harness.FreeAddr(t)
	node := exec.Command(eddyBin, "node", "--id", "n1", "--data-dir", filepath.Join(dir, "n1"),
		"--http-addr", httpAddr, "--raft-addr", harness.FreeAddr(t), "--gossip-addr", harness.FreeAddr(t),
		"--actor-addr", harness.FreeAddr(t), "--bootstrap-expect", "1", "--job", spec, "--log-level", "warn")
	var nlog bytes.Buffer
	node.Stdout, node.Stderr = &nlog, &nlog
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { node.Process.Kill(); node.Wait() }()
	api := "http://" + httpAddr
	ctl := func(args ...string) string {
		out, err := exec.Command(eddyBin, append([]string{"ctl", "--addr", api}, args...)...).CombinedOutput()
		if err != nil {
			return "ERROR " + err.Error() + ": " + string(out)
		}
		return string(out)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		if out := ctl("config", "put", "devices/d1", `{"company":"acme","site":"north"}`); strings.HasPrefix(out, "ERROR") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})

	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(broker.Addrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	seq := 0
	send := func() {
		seq++
		v := fmt.Sprintf(`{"pboxid":"d1","event_time":%q,"metric":%d}`, base.Add(time.Duration(seq)*time.Second).Format("2006-01-02 15:04:05"), seq)
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "iot-topic", Key: sarama.StringEncoder("d1"), Value: sarama.StringEncoder(v)}); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	companyOf := func(metric int) (string, error) {
		var c string
		err := conn.QueryRow("select company from readings where metric = ?", metric).Scan(&c)
		return c, err
	}
	send()
	harness.Eventually(t, 30*time.Second, func() error {
		c, err := companyOf(seq)
		if err == nil && c != "acme" {
			return fmt.Errorf("company %q, want acme", c)
		}
		return err
	})

	// Device data is versioned by event time: the new version applies to
	// readings from valid_from on — here the next reading sent.
	changed := time.Now()
	validFrom := base.Add(time.Duration(seq+1) * time.Second).Format(time.RFC3339)
	if out := ctl("config", "put", "devices/d1", `{"company":"globex","site":"south","valid_from":"`+validFrom+`"}`); strings.HasPrefix(out, "ERROR") {
		t.Fatal(out)
	}
	// Measure how soon the running job uses the change.
	var firstNew time.Duration
	for firstNew == 0 && time.Since(changed) < 5*time.Second {
		send()
		m := seq
		harness.Eventually(t, 10*time.Second, func() error {
			_, err := companyOf(m)
			return err
		})
		if c, _ := companyOf(m); c == "globex" {
			firstNew = time.Since(changed)
		}
	}
	t.Logf("broadcast change used by the job %s after the API acknowledged it (includes the sink's flush interval)", firstNew.Round(time.Millisecond))
	if firstNew == 0 {
		t.Fatalf("the job still enriches with the old company 5s after the change\n%s", nlog.String())
	}
	// Within a second, every new reading carries the new data.
	time.Sleep(time.Until(changed.Add(time.Second)))
	send()
	m := seq
	harness.Eventually(t, 10*time.Second, func() error {
		c, err := companyOf(m)
		if err == nil && c != "globex" {
			return fmt.Errorf("reading sent 1s after the change has company %q", c)
		}
		return err
	})
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"eddy_records_received_total", "eddy_raft_", "eddy_sink_rows_written_total"} {
		if !strings.Contains(body.String(), name) {
			t.Errorf("node /metrics lacks %s", name)
		}
	}
}
