package security

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/control/client"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// TestBroadcastBridgeSASL runs `eddy dev broker --sasl-user` (password from
// $KAFKA_PASSWORD) and a node whose broadcast bridge authenticates with
// --broadcast-sasl-*: a device record produced (with SCRAM) to
// iot-broadcast reaches devices/<pboxid> in Raft; a producer with a wrong
// password is refused; neither output holds the password.
func TestBroadcastBridgeSASL(t *testing.T) {
	dir := t.TempDir()
	pw := fmt.Sprintf("kafka-pw-%08x-Zq", rand.Uint32())
	t.Logf("password %s", pw)
	t.Setenv("KAFKA_PASSWORD", pw) // the broker and the node read it
	addr := harness.FreeAddr(t)
	broker := exec.Command(binary, "dev", "broker", "--listen", addr, "--sasl-user", "eddy", "--topic", "iot-broadcast", "--partitions", "2")
	var blog bytes.Buffer
	broker.Stdout, broker.Stderr = &blog, &blog
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Process.Signal(syscall.SIGTERM); broker.Wait() })
	harness.Eventually(t, 15*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	c := harness.Start(t, harness.Options{Binary: binary, Dir: dir, Nodes: 1, BootstrapExpect: 1,
		Args: []string{"--broadcast-brokers", addr, "--broadcast-sasl-mechanism", "SCRAM-SHA-256", "--broadcast-sasl-user", "eddy", "--log-level", "debug"}})

	produce := func(password string) error {
		sc, err := kafkaconf.New("sasl-producer", "", kafkaconf.Security{SASL: kafkaconf.SASL{Mechanism: kafkaconf.ScramSHA512, User: "eddy", Password: password}})
		if err != nil {
			return err
		}
		sc.Producer.Return.Successes = true
		sc.Metadata.Retry.Max = 0
		p, err := sarama.NewSyncProducer([]string{addr}, sc)
		if err != nil {
			return err
		}
		defer p.Close()
		_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "iot-broadcast", Key: sarama.StringEncoder("17079"), Value: sarama.StringEncoder(`{"company":"acme","site":"dyce"}`)})
		return err
	}
	if err := produce("wrong-password"); err == nil {
		t.Fatal("a producer with a wrong password was accepted")
	}
	if err := produce(pw); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	harness.Eventually(t, 30*time.Second, func() error {
		e, err := c.Nodes[0].Client(2*time.Second).Get(ctx, "devices/17079", client.ReadOptions{})
		if err != nil {
			return err
		}
		if !strings.Contains(e.Value, "acme") {
			return fmt.Errorf("devices/17079 = %s", e.Value)
		}
		return nil
	})
	log, err := os.ReadFile(filepath.Join(c.Nodes[0].LogPath))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(log, []byte(pw)) || bytes.Contains(blog.Bytes(), []byte(pw)) {
		t.Error("the Kafka password is in the node's or the broker's output")
	}
}
