package control

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hashicorp/raft"
)

// TLSConfig is the TLS of a node's HTTP API and Raft transport. All three
// files are PEM; the node certificate must name the node's HTTP and Raft
// hosts (SANs) and allow both server and client use, since nodes call
// each other with it (`eddy dev certs` makes such a set for testing). The
// zero value is plaintext.
//
// Raft requires mutual TLS: a peer must present a certificate signed by
// CAFile (Raft RPCs carry no other authentication). The HTTP API verifies a
// client certificate when one is presented; a write is authorised by the
// API token or by such a verified client certificate (nodes forward writes
// with theirs).
type TLSConfig struct {
	CertFile, KeyFile, CAFile string
}

// On reports whether TLS is configured.
func (t TLSConfig) On() bool { return t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" }

func (t TLSConfig) validate() error {
	if t.On() && (t.CertFile == "" || t.KeyFile == "" || t.CAFile == "") {
		return fmt.Errorf("%w: TLS needs the node certificate, its key and the CA (--tls-cert, --tls-key, --tls-ca)", ErrInvalidConfig)
	}
	return nil
}

// nodeTLS holds the loaded server and client configurations.
type nodeTLS struct {
	http, raft, client *tls.Config
}

func (t TLSConfig) load() (*nodeTLS, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: TLS node certificate: %v", ErrInvalidConfig, err)
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%w: TLS CA: %v", ErrInvalidConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: TLS CA file %s holds no PEM certificate", ErrInvalidConfig, t.CAFile)
	}
	base := tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ClientCAs: pool, RootCAs: pool}
	h, r, c := base.Clone(), base.Clone(), base.Clone()
	h.ClientAuth = tls.VerifyClientCertIfGiven
	r.ClientAuth = tls.RequireAndVerifyClientCert
	return &nodeTLS{http: h, raft: r, client: c}, nil
}

// tlsStream is a raft.StreamLayer over mutual TLS.
type tlsStream struct {
	*tcpStream
	server, client *tls.Config
}

var _ raft.StreamLayer = (*tlsStream)(nil)

func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.tcpStream.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, s.server), nil
}

func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), s.client)
}
