package sinks

import (
	"strings"
	"testing"

	"github.com/eddy-iot/eddy/sinks/kafkaconf"
	"github.com/eddy-iot/eddy/sinks/secret"
)

func TestParseKafkaURLSecurity(t *testing.T) {
	u := "kafka://eddy:p%40ss-w0rd@127.0.0.1:9092,127.0.0.1:9093?sasl=scram-sha-512&tls_ca=/etc/eddy/ca.pem&tls_server_name=kafka"
	cfg, err := ParseKafkaURL(u)
	if err != nil {
		t.Fatal(err)
	}
	want := kafkaconf.Security{
		TLS:  kafkaconf.TLS{CAFile: "/etc/eddy/ca.pem", ServerName: "kafka"},
		SASL: kafkaconf.SASL{Mechanism: kafkaconf.ScramSHA512, User: "eddy", Password: "p@ss-w0rd"},
	}
	if cfg.Security != want || len(cfg.Brokers) != 2 {
		t.Fatalf("parsed %+v brokers %v, want %+v", cfg.Security, cfg.Brokers, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := secret.RedactURL(u); strings.Contains(r, "w0rd") {
		t.Fatalf("RedactURL(%q) = %q keeps the password", u, r)
	}
	cfg, err = ParseKafkaURL("kafka://eddy:pw@127.0.0.1:9092")
	if err != nil || cfg.Security.SASL.Mechanism != kafkaconf.Plain {
		t.Fatalf("userinfo without sasl=: %+v, %v; want PLAIN", cfg.Security.SASL.Mechanism, err)
	}
	if _, err := ParseKafkaURL("kafka://127.0.0.1:9092?sasl=PLAIN"); err == nil {
		t.Fatal("sasl= without credentials accepted")
	}
	cfg, _ = ParseKafkaURL("kafka://eddy:pw@127.0.0.1:9092?sasl=GSSAPI")
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), "pw") {
		t.Fatalf("GSSAPI: %v; want an error without the password", err)
	}
}
