package kafkaconf_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 to dir and
// returns the broker's tls.Config and the CA file.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, ca
}

// roundTrip produces one message with sec and reads it back.
func roundTrip(t *testing.T, addrs []string, sec kafkaconf.Security) error {
	t.Helper()
	sc, err := kafkaconf.New("kafkaconf-test", "", sec)
	if err != nil {
		t.Fatal(err)
	}
	sc.Producer.Return.Successes = true
	sc.Net.DialTimeout = 5 * time.Second
	sc.Metadata.Retry.Max = 1
	client, err := sarama.NewClient(addrs, sc)
	if err != nil {
		return err
	}
	defer client.Close()
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return err
	}
	defer prod.Close()
	part, off, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "t", Key: sarama.StringEncoder("17079"), Value: sarama.StringEncoder("hello")})
	if err != nil {
		return err
	}
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition("t", part, off)
	if err != nil {
		return err
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		if string(m.Value) != "hello" {
			t.Fatalf("read %q, want hello", m.Value)
		}
	case err := <-pc.Errors():
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no message read back in 10s")
	}
	return nil
}

// TestSASLAgainstKfake produces and consumes through a kfake broker that
// requires SASL, for each mechanism, over plaintext and over TLS, and checks
// that a wrong password fails with sarama's authentication error.
func TestSASLAgainstKfake(t *testing.T) {
	serverTLS, caFile := selfSigned(t)
	for _, mech := range []string{kafkaconf.Plain, kafkaconf.ScramSHA256, kafkaconf.ScramSHA512} {
		for _, useTLS := range []bool{false, true} {
			name := mech
			if useTLS {
				name += "/tls"
			}
			t.Run(name, func(t *testing.T) {
				opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, "t"), kfake.EnableSASL(), kfake.Superuser(mech, "eddy", "s3cret-pw")}
				var sec kafkaconf.Security
				if useTLS {
					opts = append(opts, kfake.TLS(serverTLS))
					sec.TLS.CAFile = caFile
				}
				c, err := kfake.NewCluster(opts...)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				sec.SASL = kafkaconf.SASL{Mechanism: mech, User: "eddy", Password: "s3cret-pw"}
				if err := roundTrip(t, c.ListenAddrs(), sec); err != nil {
					t.Fatalf("with the right password: %v", err)
				}
				sec.SASL.Password = "wrong"
				err = roundTrip(t, c.ListenAddrs(), sec)
				if err == nil {
					t.Fatal("a wrong password was accepted")
				}
				// kfake closes the connection on a failed authentication:
				// sarama only sees EOF, so Explain adds the hint.
				err = kafkaconf.Explain(err, sec)
				if !strings.Contains(err.Error(), "check the SASL mechanism, user and password") {
					t.Fatalf("wrong password: error %q does not point at the credentials", err)
				}
				if strings.Contains(err.Error(), "wrong") || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error %q holds the password", err)
				}
				if !useTLS {
					return
				}
				sec.SASL.Password = "s3cret-pw"
				sec.TLS = kafkaconf.TLS{} // plaintext to a TLS listener
				if err := roundTrip(t, c.ListenAddrs(), sec); err == nil {
					t.Fatal("a plaintext client reached a TLS broker")
				}
			})
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		sec  kafkaconf.Security
		want string
	}{
		{kafkaconf.Security{SASL: kafkaconf.SASL{Mechanism: "GSSAPI", User: "u", Password: "p"}}, "want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
		{kafkaconf.Security{SASL: kafkaconf.SASL{Mechanism: kafkaconf.Plain, User: "u"}}, "needs a user and a password"},
		{kafkaconf.Security{SASL: kafkaconf.SASL{User: "u", Password: "p"}}, "without a mechanism"},
		{kafkaconf.Security{TLS: kafkaconf.TLS{CertFile: "c.pem"}}, "give both files or neither"},
	} {
		err := tc.sec.Validate()
		if err == nil || !errors.Is(err, kafkaconf.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want ErrInvalid saying %q", tc.sec.TLS, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), `"p"`) {
			t.Errorf("error %q holds the password", err)
		}
	}
	if err := (kafkaconf.Security{}).Validate(); err != nil {
		t.Errorf("zero Security: %v", err)
	}
	if s := (kafkaconf.Security{SASL: kafkaconf.SASL{Mechanism: kafkaconf.ScramSHA512, User: "u", Password: "pw123"}}).String(); strings.Contains(s, "pw123") {
		t.Errorf("String %q holds the password", s)
	}
}
