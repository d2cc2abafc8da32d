package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
)

// deadAddr returns a URL on which nothing listens.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func writeErr(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(control.ErrorBody{Error: "boom: " + code, Code: code})
}

func TestClientRetryPolicy(t *testing.T) {
	cases := []struct {
		name      string
		handler   func(calls int64, w http.ResponseWriter, r *http.Request)
		op        func(c *Client) error
		wantErr   error
		wantCalls int64
	}{
		{
			name: "write retried on 503 until it succeeds",
			handler: func(n int64, w http.ResponseWriter, r *http.Request) {
				if n < 3 {
					writeErr(w, 503, control.CodeNoLeader)
					return
				}
				json.NewEncoder(w).Encode(control.KVEntry{Key: "k", Value: "v", ModifyIndex: 7})
			},
			op: func(c *Client) error {
				e, err := c.Put(context.Background(), "k", []byte("v"))
				if err == nil && e.ModifyIndex != 7 {
					return errors.New("wrong entry")
				}
				return err
			},
			wantCalls: 3,
		},
		{
			name:      "conflict is not retried",
			handler:   func(n int64, w http.ResponseWriter, r *http.Request) { writeErr(w, 409, control.CodeConflict) },
			op:        func(c *Client) error { _, err := c.CAS(context.Background(), "k", []byte("v"), 3); return err },
			wantErr:   control.ErrConflict,
			wantCalls: 1,
		},
		{
			name: "write whose connection dies is not retried: outcome unknown",
			handler: func(n int64, w http.ResponseWriter, r *http.Request) {
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
			},
			op:        func(c *Client) error { _, err := c.Put(context.Background(), "k", []byte("v")); return err },
			wantErr:   control.ErrUnknownOutcome,
			wantCalls: 1,
		},
		{
			name: "read whose connection dies is retried",
			handler: func(n int64, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					conn, _, _ := w.(http.Hijacker).Hijack()
					conn.Close()
					return
				}
				json.NewEncoder(w).Encode(control.KVEntry{Key: "k"})
			},
			op:        func(c *Client) error { _, err := c.Get(context.Background(), "k", ReadOptions{}); return err },
			wantCalls: 2,
		},
		{
			name:    "not found maps to ErrNotFound",
			handler: func(n int64, w http.ResponseWriter, r *http.Request) { writeErr(w, 404, control.CodeNotFound) },
			op: func(c *Client) error {
				_, err := c.Get(context.Background(), "k", ReadOptions{Consistent: true})
				return err
			},
			wantErr:   control.ErrNotFound,
			wantCalls: 1,
		},
		{
			name: "504 on a write is unknown outcome",
			handler: func(n int64, w http.ResponseWriter, r *http.Request) {
				writeErr(w, 504, control.CodeUnknownOutcome)
			},
			op:        func(c *Client) error { _, err := c.Delete(context.Background(), "k"); return err },
			wantErr:   control.ErrUnknownOutcome,
			wantCalls: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tc.handler(calls.Add(1), w, r)
			}))
			defer srv.Close()
			// The first address is dead: the client must move on to the
			// second without counting it as an attempt on the server.
			c, err := New(Config{Addrs: []string{deadAddr(t), srv.URL}, RetryTimeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = tc.op(c)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("server saw %d calls, want %d", got, tc.wantCalls)
			}
		})
	}
}

func TestClientSendsTokenAndEscapesKeys(t *testing.T) {
	var gotAuth, gotPath, gotQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotPath, gotQuery = r.Header.Get("Authorization"), r.URL.EscapedPath(), r.URL.RawQuery
		json.NewEncoder(w).Encode(control.KVEntry{})
	}))
	defer srv.Close()
	c, _ := New(Config{Addrs: []string{srv.URL}, Token: "s3cret"})
	if _, err := c.CAS(context.Background(), "devices/17079", []byte("{}"), 0); err != nil {
		t.Fatal(err)
	}
	if gotAuth != "Bearer s3cret" || gotPath != "/v1/config/devices/17079" || gotQuery != "cas=0" {
		t.Errorf("auth %q path %q query %q", gotAuth, gotPath, gotQuery)
	}
}

func TestClientGivesUpAfterRetryTimeout(t *testing.T) {
	c, _ := New(Config{Addrs: []string{deadAddr(t)}, RetryTimeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := c.Put(context.Background(), "k", nil)
	if !errors.Is(err, control.ErrNoLeader) {
		t.Fatalf("err %v, want ErrNoLeader (unreachable)", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("gave up after %v", d)
	}
}

func TestClientFailFastRefused(t *testing.T) {
	dead := deadAddr(t)
	c, _ := New(Config{Addrs: []string{dead, deadAddr(t)}, RetryTimeout: 5 * time.Second, FailFastRefused: true})
	start := time.Now()
	_, err := c.Put(context.Background(), "k", nil)
	var ue *UnreachableError
	if !errors.As(err, &ue) || !ue.Refused || !errors.Is(err, control.ErrNoLeader) || !strings.Contains(err.Error(), "connection refused to http://") {
		t.Fatalf("err %v, want connection refused", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("gave up after %v, want at once", d)
	}
}
