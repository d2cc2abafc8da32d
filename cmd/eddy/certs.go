package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

func newDevCertsCmd() *cobra.Command {
	var dir string
	var hosts []string
	var valid time.Duration
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Write a test CA and a node certificate for --tls-cert/--tls-key/--tls-ca",
		Long: `Writes into --dir: ca.pem (a new self-signed ECDSA P-256 CA), node.pem and
node-key.pem (a certificate signed by it, valid for server and client use, with
the SANs 127.0.0.1, ::1, localhost and every --host). Every node may share the
one node certificate. For testing only: the CA key is not kept, so no other
certificate can be signed by this CA later.

  eddy dev certs --dir /tmp/eddy-tls --host node1.example
  eddy node ... --tls-cert /tmp/eddy-tls/node.pem --tls-key /tmp/eddy-tls/node-key.pem --tls-ca /tmp/eddy-tls/ca.pem
  eddy ctl --addr https://127.0.0.1:8081 --ca /tmp/eddy-tls/ca.pem raft`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("--dir is required")
			}
			if valid <= 0 {
				return fmt.Errorf("--valid %v: must be > 0", valid)
			}
			if err := writeDevCerts(dir, hosts, valid); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s, %s and %s\n", filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write ca.pem, node.pem and node-key.pem to (created; required)")
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "more host names or IP addresses of the node certificate, comma-separated")
	cmd.Flags().DurationVar(&valid, "valid", 30*24*time.Hour, "validity of the certificates")
	return cmd
}

// writeDevCerts writes a CA and a node certificate/key to dir (see
// newDevCertsCmd).
func writeDevCerts(dir string, hosts []string, valid time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "eddy dev CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(valid),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	node := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1), Subject: pkix.Name{CommonName: "eddy node"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(valid),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			node.IPAddresses = append(node.IPAddresses, ip)
		} else if h != "" {
			node.DNSNames = append(node.DNSNames, h)
		}
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	nodeDER, err := x509.CreateCertificate(rand.Reader, node, caCert, &nodeKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(nodeKey)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{
		{"ca.pem", "CERTIFICATE", caDER, 0o644},
		{"node.pem", "CERTIFICATE", nodeDER, 0o644},
		{"node-key.pem", "PRIVATE KEY", keyDER, 0o600},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return err
		}
	}
	return nil
}
