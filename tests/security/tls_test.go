package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/control/client"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// TestTLSCluster runs 3 nodes with certificates from `eddy dev certs`: the
// API is HTTPS and Raft runs over mutual TLS (a write through a follower
// commits, so the Raft quorum talks TLS); a plaintext client is refused,
// a client without the CA does not trust the nodes, the token still guards
// writes, and the key and token stay out of the logs.
func TestTLSCluster(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if out, err := exec.Command(binary, "dev", "certs", "--dir", certs).CombinedOutput(); err != nil {
		t.Fatalf("eddy dev certs: %v\n%s", err, out)
	}
	tokenFile := writeFile(t, dir, "token", token)
	c := harness.Launch(t, harness.Options{
		Binary: binary, Dir: dir, Nodes: 3, BootstrapExpect: 3, Token: token,
		Args: []string{"--api-token-file", tokenFile,
			"--tls-cert", filepath.Join(certs, "node.pem"), "--tls-key", filepath.Join(certs, "node-key.pem"), "--tls-ca", filepath.Join(certs, "ca.pem")},
	})
	pem, err := os.ReadFile(filepath.Join(certs, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: pool}
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	url := func(n *harness.Node) string { return "https://" + n.HTTPAddr }

	var leader string
	harness.Eventually(t, time.Minute, func() error {
		resp, err := hc.Get(url(c.Nodes[0]) + "/v1/cluster/raft")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st control.RaftStatus
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		if st.LeaderID == "" {
			return errors.New("no leader yet")
		}
		leader = st.LeaderID
		return nil
	})
	var follower *harness.Node
	for _, n := range c.Nodes {
		if n.ID != leader {
			follower = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	anon, _ := client.New(client.Config{Addrs: []string{url(follower)}, TLS: tc, RetryTimeout: 5 * time.Second})
	if _, err := anon.Put(ctx, "devices/17079", []byte(`{"company":"c","site":"s"}`)); !errors.Is(err, control.ErrUnauthorized) {
		t.Fatalf("put over TLS without token: %v, want ErrUnauthorized", err)
	}
	authed, _ := client.New(client.Config{Addrs: []string{url(follower)}, TLS: tc, Token: token, RetryTimeout: 20 * time.Second})
	if _, err := authed.Put(ctx, "devices/17079", []byte(`{"company":"ACME","site":"Aberdeen"}`)); err != nil {
		t.Fatalf("put over TLS with token through follower %s: %v", follower.ID, err)
	}
	// A client certificate signed by the cluster CA authorises a write
	// without the token (nodes forward with theirs).
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "node.pem"), filepath.Join(certs, "node-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	withCert, _ := client.New(client.Config{Addrs: []string{url(follower)}, TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}, RetryTimeout: 20 * time.Second})
	if _, err := withCert.Put(ctx, "devices/17080", []byte(`{"company":"ACME","site":"Dyce"}`)); err != nil {
		t.Fatalf("put over TLS with a CA-signed client certificate, no token: %v", err)
	}
	for _, n := range c.Nodes {
		cl, _ := client.New(client.Config{Addrs: []string{url(n)}, TLS: tc, RetryTimeout: 5 * time.Second})
		harness.Eventually(t, 10*time.Second, func() error {
			e, err := cl.Get(ctx, "devices/17079", client.ReadOptions{})
			if err != nil {
				return err
			}
			if !strings.Contains(e.Value, "ACME") {
				return fmt.Errorf("%s reads %s", n.ID, e.Value)
			}
			return nil
		})
	}

	// Plaintext HTTP to an HTTPS node: refused (Go answers 400).
	resp, err := http.Get("http://" + follower.HTTPAddr + "/v1/config/devices/17079")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("a plaintext client read a value from a TLS node")
		}
	}
	// A client that does not know the CA does not trust the node.
	if _, err := (&http.Client{Timeout: 3 * time.Second}).Get(url(follower) + "/healthz"); err == nil {
		t.Fatal("a client without the CA accepted the node certificate")
	}
	// Raft: a peer without a client certificate is refused by the handshake.
	conn, err := tls.Dial("tcp", follower.RaftAddr, tc)
	if err == nil {
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = conn.Write([]byte{0})
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil {
		t.Fatal("the Raft port accepted a TLS peer without a client certificate")
	}

	keyPEM, _ := os.ReadFile(filepath.Join(certs, "node-key.pem"))
	keyBody := strings.Split(string(keyPEM), "\n")[1]
	for _, n := range c.Nodes {
		log, err := os.ReadFile(n.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{token, keyBody} {
			if strings.Contains(string(log), s) {
				t.Errorf("%s's output contains a secret", n.ID)
			}
		}
	}
}
