package devbroker_test

import (
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// TestSASL: a broker with SASLUser/SASLPassword accepts sarama clients that
// authenticate with each mechanism and the right password, and refuses a
// wrong password and a client without SASL.
func TestSASL(t *testing.T) {
	cfg := devbroker.DefaultConfig()
	cfg.SASLUser, cfg.SASLPassword = "eddy", "dev-s3cret"
	b, err := devbroker.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	connect := func(sasl kafkaconf.SASL) error {
		sc, err := kafkaconf.New("sasl-test", "", kafkaconf.Security{SASL: sasl})
		if err != nil {
			t.Fatal(err)
		}
		sc.Net.DialTimeout, sc.Metadata.Retry.Max = 2*time.Second, 0
		c, err := sarama.NewClient(b.Addrs(), sc)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Partitions("iot-topic")
		return err
	}
	for _, m := range []string{kafkaconf.Plain, kafkaconf.ScramSHA256, kafkaconf.ScramSHA512} {
		if err := connect(kafkaconf.SASL{Mechanism: m, User: "eddy", Password: "dev-s3cret"}); err != nil {
			t.Errorf("%s with the right password: %v", m, err)
		}
		if err := connect(kafkaconf.SASL{Mechanism: m, User: "eddy", Password: "wrong"}); err == nil {
			t.Errorf("%s with a wrong password connected", m)
		}
	}
	if err := connect(kafkaconf.SASL{}); err == nil {
		t.Error("a client without SASL connected")
	}
	bad := devbroker.DefaultConfig()
	bad.SASLUser = "eddy"
	if err := bad.Validate(); err == nil {
		t.Error("a SASL user without password validated")
	}
}
