// Package kafkaconf builds the sarama configuration every Kafka client of
// eddy starts from — the source reader, the Kafka sink, the broadcast
// bridge, the replayer and the read-back helpers — so that the protocol
// version, TLS and SASL are set in one place.
//
//	sc, err := kafkaconf.New("eddy", "", kafkaconf.Security{
//		SASL: kafkaconf.SASL{Mechanism: kafkaconf.ScramSHA512, User: "eddy", Password: pw},
//	})
//	// then set the producer/consumer fields of sc, as sarama.NewConfig's
//
// SCRAM (RFC 5802 / RFC 7677) is spoken through github.com/xdg-go/scram.
// A password is never part of an error or of String.
package kafkaconf

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// DefaultVersion is the Kafka protocol version eddy speaks unless told
// otherwise.
const DefaultVersion = "2.8.0"

// SASL mechanisms.
const (
	Plain       = "PLAIN"
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// ErrInvalid wraps every configuration error of this package.
var ErrInvalid = errors.New("kafkaconf: invalid Kafka security configuration")

// TLS configures TLS to the brokers. The zero value is plaintext.
type TLS struct {
	// Enable turns TLS on. Setting CAFile, CertFile or KeyFile turns it
	// on too.
	Enable bool
	// CAFile is a PEM file of the CAs that sign the brokers' certificates;
	// default the system roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and key, for
	// brokers that require mutual TLS; both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the broker certificate;
	// default the host of the broker address.
	ServerName string
}

// On reports whether TLS is used.
func (t TLS) On() bool { return t.Enable || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// SASL configures SASL authentication. The zero value is none.
type SASL struct {
	// Mechanism is "" (none), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	// PLAIN sends the password as is: use it only over TLS.
	Mechanism string
	// User and Password are the credentials; both required with a
	// mechanism. Password is a secret: it is never printed.
	User, Password string
}

// Security is the TLS and SASL configuration of a Kafka client. The zero
// value is plaintext without authentication.
type Security struct {
	TLS  TLS
	SASL SASL
}

// String describes s without its password, e.g. "tls, sasl SCRAM-SHA-256 user eddy".
func (s Security) String() string {
	out := "plaintext"
	if s.TLS.On() {
		out = "tls"
	}
	if s.SASL.Mechanism != "" {
		out += ", sasl " + s.SASL.Mechanism + " user " + s.SASL.User
	}
	return out
}

// Validate reports the first invalid field, saying what is allowed.
func (s Security) Validate() error {
	switch s.SASL.Mechanism {
	case "":
		if s.SASL.User != "" || s.SASL.Password != "" {
			return fmt.Errorf("%w: SASL user or password given without a mechanism; set it to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", ErrInvalid)
		}
	case Plain, ScramSHA256, ScramSHA512:
		if s.SASL.User == "" || s.SASL.Password == "" {
			return fmt.Errorf("%w: SASL %s needs a user and a password", ErrInvalid, s.SASL.Mechanism)
		}
	default:
		return fmt.Errorf("%w: SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", ErrInvalid, s.SASL.Mechanism)
	}
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		return fmt.Errorf("%w: TLS client certificate and key go together: give both files or neither", ErrInvalid)
	}
	return nil
}

// TLSConfig returns the *tls.Config of t (nil when TLS is off), reading
// the CA and client certificate files.
func (t TLS) TLSConfig() (*tls.Config, error) {
	if !t.On() {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS CA file: %v", ErrInvalid, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: TLS CA file %s holds no PEM certificate", ErrInvalid, t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS client certificate: %v", ErrInvalid, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// New returns sarama.NewConfig with ClientID clientID (default "eddy"),
// Version version (default DefaultVersion) and the TLS and SASL settings
// of sec applied. The caller sets the producer and consumer fields.
// Errors wrap ErrInvalid.
func New(clientID, version string, sec Security) (*sarama.Config, error) {
	if version == "" {
		version = DefaultVersion
	}
	if clientID == "" {
		clientID = "eddy"
	}
	v, err := sarama.ParseKafkaVersion(version)
	if err != nil {
		return nil, fmt.Errorf("%w: version %q: %v (e.g. %s)", ErrInvalid, version, err, DefaultVersion)
	}
	if err := sec.Validate(); err != nil {
		return nil, err
	}
	sc := sarama.NewConfig()
	sc.Version = v
	sc.ClientID = clientID
	tc, err := sec.TLS.TLSConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = tc
	}
	if m := sec.SASL.Mechanism; m != "" {
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Handshake = true
		sc.Net.SASL.User = sec.SASL.User
		sc.Net.SASL.Password = sec.SASL.Password
		switch m {
		case Plain:
			sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		case ScramSHA256:
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha256.New)} }
		case ScramSHA512:
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha512.New)} }
		}
	}
	return sc, nil
}

// MustNew is New for arguments known to be valid (tests, constants); it
// panics on error.
func MustNew(clientID, version string, sec Security) *sarama.Config {
	sc, err := New(clientID, version, sec)
	if err != nil {
		panic(err)
	}
	return sc
}

// scramClient is a sarama.SCRAMClient over xdg-go/scram.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

var _ sarama.SCRAMClient = (*scramClient)(nil)

func (c *scramClient) Begin(user, password, authzID string) error {
	cl, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	c.conv = cl.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }

func (c *scramClient) Done() bool { return c.conv.Done() }

// Explain adds a hint to a connection error of a client configured with
// sec: a broker that rejects SASL credentials or a TLS handshake often
// just closes the connection, which sarama reports as "run out of
// available brokers". The result wraps err.
func Explain(err error, sec Security) error {
	if err == nil || !errors.Is(err, sarama.ErrOutOfBrokers) && !errors.Is(err, sarama.ErrSASLAuthenticationFailed) {
		return err
	}
	switch {
	case sec.SASL.Mechanism != "":
		return fmt.Errorf("%w (connected with %s: check the SASL mechanism, user and password, and TLS)", err, sec)
	case sec.TLS.On():
		return fmt.Errorf("%w (connected with TLS: check the broker's listener and the CA)", err)
	}
	return err
}
