package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/freeport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
)

func TestBridgeCommand(t *testing.T) {
	cases := []struct {
		key, value string
		want       control.Command
		wantErr    bool
	}{
		{"17079", `{"company":"acme","site":"dyce","threshold":40}`, control.KVSet{Key: "devices/17079", Value: `{"company":"acme","site":"dyce","threshold":40}`}, false},
		{"", `{"pboxid":"42","company":"c","site":"s"}`, control.KVSet{Key: "devices/42", Value: `{"company":"c","site":"s"}`}, false},
		{"42", ``, control.KVDelete{Key: "devices/42"}, false},
		{"", ``, nil, true},
		{"", `{"company":"c"}`, nil, true},
		{"7", `{"company":`, nil, true},
		{"7", `{"colour":"red"}`, nil, true},
		{"a/b", `{"company":"c"}`, nil, true},
	}
	for _, c := range cases {
		got, err := bridgeCommand([]byte(c.key), []byte(c.value))
		if c.wantErr != (err != nil) || (!c.wantErr && fmt.Sprint(got) != fmt.Sprint(c.want)) {
			t.Errorf("bridgeCommand(%q, %q) = %v, %v; want %v, err %v", c.key, c.value, got, err, c.want, c.wantErr)
		}
	}
}

// TestBridgeAppliesBroadcastTopic: a one-node cluster with the bridge on a
// real Kafka-protocol broker (kfake) applies the iot-broadcast topic to
// devices/ keys, skips invalid messages, and follows new messages.
func TestBridgeAppliesBroadcastTopic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker and a node")
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "iot-broadcast"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	prod, err := sarama.NewSyncProducer(kc.ListenAddrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(key, value string) {
		t.Helper()
		m := &sarama.ProducerMessage{Topic: "iot-broadcast", Value: sarama.StringEncoder(value)}
		if key != "" {
			m.Key = sarama.StringEncoder(key)
		}
		if value == "" {
			m.Value = nil
		}
		if _, _, err := prod.SendMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	send("17079", `{"company":"acme","site":"dyce","threshold":40}`)
	send("42", `{"company":"c","site":"s"}`)
	send("7", `not json`)
	send("42", ``) // tombstone: same key, same partition, after the set

	cfg := control.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.BootstrapExpect = "b1", t.TempDir(), 1
	addrs := freeport.Take(t, 3)
	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = addrs[0], addrs[1], addrs[2]
	reg := prometheus.NewRegistry()
	cfg.Registerer, cfg.Gatherer = reg, reg
	n, err := StartNode(cfg, DefaultConfig(), WithBridge(BridgeConfig{Brokers: kc.ListenAddrs()}))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	eventually(t, 20*time.Second, func() error {
		if d, ok := n.Devices().Device("17079"); !ok || d.Company != "acme" || *d.Threshold != 40 {
			return errors.New("devices/17079 not applied")
		}
		if _, ok := n.Devices().Device("42"); ok {
			return errors.New("devices/42 not deleted")
		}
		if got := counterValue(t, reg, "eddy_broadcast_bridge_messages_total", "invalid"); got != 1 {
			return fmt.Errorf("invalid messages counted: %v", got)
		}
		return nil
	})
	// A new message is used within a second.
	sent := time.Now()
	send("17079", `{"company":"beta","site":"dyce"}`)
	eventually(t, 5*time.Second, func() error {
		if d, _ := n.Devices().Device("17079"); d.Company != "beta" {
			return errors.New("update not applied")
		}
		return nil
	})
	// Kafka fetch + Raft commit + FSM apply; typically tens of ms. The bound
	// is loose so that a loaded CI machine does not make it flaky.
	if d := time.Since(sent); d > 3*time.Second {
		t.Errorf("broadcast update took %v to reach the device lookup, want well under a second", d)
	} else {
		t.Logf("broadcast update reached the device lookup after %v", d)
	}
	if _, err := n.Apply(context.Background(), control.KVSet{Key: "x", Value: "y"}); err != nil {
		t.Fatal(err)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
