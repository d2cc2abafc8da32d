// Package client is the Go client of eddy's control-plane HTTP API (the API
// that `eddy ctl` speaks). Any node answers: followers forward writes and
// consistent reads to the leader themselves, so the client never needs to
// find the leader.
//
// Retries: a request that certainly did not take effect — connection
// refused, or HTTP 503 (no leader / not leader / node closing) — is retried
// with exponential backoff (25 ms doubling to 500 ms, ±20 % jitter;
// github.com/cenkalti/backoff), rotating through Config.Addrs,
// until Config.RetryTimeout or the context ends. Reads are also retried on
// any other transport error. A write whose answer was lost (connection
// reset after sending, HTTP 502/504) is not retried: it returns an error
// wrapping control.ErrUnknownOutcome, because it may have been applied.
//
// Errors wrap the sentinels of package control (ErrNotFound, ErrConflict,
// ErrInvalid, ErrTooLarge, ErrUnauthorized, ErrNoLeader, ErrUnknownOutcome),
// usually through a *control.APIError carrying the HTTP status and message.
//
//	c, _ := client.New(client.Config{Addrs: []string{"http://127.0.0.1:8080"}})
//	e, err := c.Put(ctx, "devices/17079", []byte(`{"company":"acme","site":"dyce"}`))
//	_, err = c.CAS(ctx, "devices/17079", newValue, e.ModifyIndex) // errors.Is(err, control.ErrConflict) if changed meanwhile
//	got, err := c.Get(ctx, "devices/17079", client.ReadOptions{Consistent: true})
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/eddy-iot/eddy/control"
)

// Config configures a Client.
type Config struct {
	// Addrs are base URLs of nodes, e.g. http://127.0.0.1:8080 (the scheme
	// defaults to http). At least one is required. The client starts with
	// the first and moves to the next when one cannot be reached.
	Addrs []string
	// Token is sent as "Authorization: Bearer <Token>" when set.
	Token string
	// RetryTimeout bounds the retries of a request that certainly did not
	// take effect; default 10 s.
	RetryTimeout time.Duration
	// FailFastRefused makes a request fail at once, with an error saying
	// "connection refused to ADDR", when every address refused the
	// connection (nothing listens there: a typo, or no node running)
	// instead of retrying for RetryTimeout. A pinned request (Leave) fails
	// at the first refusal. eddy ctl sets it; default false (a restarting
	// node is waited for).
	FailFastRefused bool
	// RequestTimeout bounds one HTTP attempt (blocking watches add their
	// wait); default 15 s.
	RequestTimeout time.Duration
	// HTTPClient to use; default: a client with 2 s dial timeout and no
	// redirects followed.
	HTTPClient *http.Client
	// TLS is the TLS configuration of the default HTTPClient, for https://
	// addresses (e.g. RootCAs holding the cluster CA); default the system
	// roots. Ignored when HTTPClient is set.
	TLS *tls.Config
}

// Client talks to one cluster. Safe for concurrent use.
type Client struct {
	cfg   Config
	addrs []string
	cur   atomic.Int64
	hc    *http.Client
}

// New returns a Client; it does not contact the cluster.
func New(cfg Config) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("client: at least one node address is required")
	}
	c := &Client{cfg: cfg}
	for _, a := range cfg.Addrs {
		a = strings.TrimRight(strings.TrimSpace(a), "/")
		if a == "" {
			continue
		}
		if !strings.Contains(a, "://") {
			a = "http://" + a
		}
		u, err := url.Parse(a)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("client: bad node address %q (want http://host:port)", a)
		}
		c.addrs = append(c.addrs, a)
	}
	if len(c.addrs) == 0 {
		return nil, errors.New("client: at least one node address is required")
	}
	if c.cfg.RetryTimeout <= 0 {
		c.cfg.RetryTimeout = 10 * time.Second
	}
	if c.cfg.RequestTimeout <= 0 {
		c.cfg.RequestTimeout = 15 * time.Second
	}
	c.hc = cfg.HTTPClient
	if c.hc == nil {
		c.hc = &http.Client{
			Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 32,
				IdleConnTimeout:     30 * time.Second,
				TLSClientConfig:     cfg.TLS,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// ReadOptions modify reads.
type ReadOptions struct {
	// Consistent makes the read linearizable: served by the leader after it
	// confirmed its leadership with a quorum (?consistent). Default: the
	// answering node's local replica, which may lag.
	Consistent bool
}

func (o ReadOptions) query() url.Values {
	q := url.Values{}
	if o.Consistent {
		q.Set("consistent", "")
	}
	return q
}

// request describes one API call.
type request struct {
	method     string
	path       string
	query      url.Values
	body       []byte
	idempotent bool // safe to retry after any transport error
	pinned     bool // only the first address (the call is about that node)
	timeout    time.Duration
}

func keyPath(prefix, key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return prefix + strings.Join(parts, "/")
}

// Put writes value under key and returns the new entry.
func (c *Client) Put(ctx context.Context, key string, value []byte) (control.KVEntry, error) {
	var e control.KVEntry
	_, err := c.do(ctx, request{method: http.MethodPut, path: keyPath("/v1/config/", key), body: value}, &e)
	return e, err
}

// CAS writes value under key only if the key's ModifyIndex is rev (rev 0:
// only if the key does not exist). A failed comparison is an error wrapping
// control.ErrConflict.
func (c *Client) CAS(ctx context.Context, key string, value []byte, rev uint64) (control.KVEntry, error) {
	var e control.KVEntry
	q := url.Values{"cas": {strconv.FormatUint(rev, 10)}}
	_, err := c.do(ctx, request{method: http.MethodPut, path: keyPath("/v1/config/", key), query: q, body: value}, &e)
	return e, err
}

// Get reads key; a missing key is an error wrapping control.ErrNotFound.
func (c *Client) Get(ctx context.Context, key string, opts ReadOptions) (control.KVEntry, error) {
	var e control.KVEntry
	_, err := c.do(ctx, request{method: http.MethodGet, path: keyPath("/v1/config/", key), query: opts.query(), idempotent: true}, &e)
	return e, err
}

// Delete removes key. Deleting a missing key succeeds with Deleted false.
func (c *Client) Delete(ctx context.Context, key string) (control.DeleteResult, error) {
	var r control.DeleteResult
	_, err := c.do(ctx, request{method: http.MethodDelete, path: keyPath("/v1/config/", key)}, &r)
	return r, err
}

// DeleteCAS removes key only if its ModifyIndex is rev (control.ErrConflict
// otherwise).
func (c *Client) DeleteCAS(ctx context.Context, key string, rev uint64) (control.DeleteResult, error) {
	var r control.DeleteResult
	q := url.Values{"cas": {strconv.FormatUint(rev, 10)}}
	_, err := c.do(ctx, request{method: http.MethodDelete, path: keyPath("/v1/config/", key), query: q}, &r)
	return r, err
}

// List returns the entries under prefix ("" = all), sorted by key.
func (c *Client) List(ctx context.Context, prefix string, opts ReadOptions) (control.KVList, error) {
	q := opts.query()
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	var l control.KVList
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/config", query: q, idempotent: true}, &l)
	return l, err
}

// Watch blocks until something under prefix changes after index (the Index
// of an earlier List or Watch), or wait passes, and returns the entries then
// (a Consul-style blocking query). It may return early with the same
// entries; compare Index. wait 0 means the server default (5 min).
func (c *Client) Watch(ctx context.Context, prefix string, index uint64, wait time.Duration) (control.KVList, error) {
	q := url.Values{"index": {strconv.FormatUint(index, 10)}}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if wait <= 0 {
		wait = control.DefaultWait
	}
	q.Set("wait", wait.String())
	var l control.KVList
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/config", query: q, idempotent: true, timeout: wait + c.cfg.RequestTimeout}, &l)
	return l, err
}

// Members returns the answering node's view of the cluster members.
func (c *Client) Members(ctx context.Context) ([]control.MemberInfo, error) {
	var m []control.MemberInfo
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/cluster/members", idempotent: true}, &m)
	return m, err
}

// Raft returns the answering node's view of Raft.
func (c *Client) Raft(ctx context.Context) (control.RaftStatus, error) {
	var s control.RaftStatus
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/cluster/raft", idempotent: true}, &s)
	return s, err
}

// RaftOf returns the Raft view of the node at the i-th address (no
// failover to other nodes).
func (c *Client) RaftOf(ctx context.Context, i int) (control.RaftStatus, error) {
	var s control.RaftStatus
	_, err := c.doAt(ctx, c.addrs[i], request{method: http.MethodGet, path: "/v1/cluster/raft", idempotent: true}, &s)
	return s, err
}

// Leave makes the node at the first address leave the cluster for good
// (removed from Raft, then it stops). Never sent to another node.
func (c *Client) Leave(ctx context.Context) error {
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/cluster/leave", pinned: true}, nil)
	return err
}

// Promote makes the non-voter id a Raft voter.
func (c *Client) Promote(ctx context.Context, id string) error {
	return c.serverOp(ctx, "/v1/cluster/raft/promote", id)
}

// RemoveServer removes id from the Raft configuration (for a server that is
// gone for good; a live one is added back as a non-voter by autopilot).
func (c *Client) RemoveServer(ctx context.Context, id string) error {
	return c.serverOp(ctx, "/v1/cluster/raft/remove", id)
}

func (c *Client) serverOp(ctx context.Context, path, id string) error {
	body, _ := json.Marshal(map[string]string{"id": id})
	_, err := c.do(ctx, request{method: http.MethodPost, path: path, body: body}, nil)
	return err
}

// PutJob stores a job spec.
func (c *Client) PutJob(ctx context.Context, name string, spec []byte) (control.Job, error) {
	var j control.Job
	_, err := c.do(ctx, request{method: http.MethodPut, path: "/v1/jobs/" + url.PathEscape(name), body: spec}, &j)
	return j, err
}

// GetJob reads a job spec (control.ErrNotFound if missing).
func (c *Client) GetJob(ctx context.Context, name string) (control.Job, error) {
	var j control.Job
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/jobs/" + url.PathEscape(name), idempotent: true}, &j)
	return j, err
}

// JobInfo reads a job with its state and per-partition status (also a
// cancelled one; control.ErrNotFound if never submitted).
func (c *Client) JobInfo(ctx context.Context, name string) (control.JobInfo, error) {
	var j control.JobInfo
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/jobs/" + url.PathEscape(name), idempotent: true}, &j)
	return j, err
}

// JobInfos lists the jobs with their state, cancelled ones included.
func (c *Client) JobInfos(ctx context.Context) ([]control.JobInfo, error) {
	var j []control.JobInfo
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/jobs", idempotent: true}, &j)
	return j, err
}

// CancelJob stops a job on every node (control.JobCancel); its status stays,
// as cancelled. control.ErrNotFound if the job does not exist.
func (c *Client) CancelJob(ctx context.Context, name string) error {
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/jobs/" + url.PathEscape(name) + "/cancel"}, nil)
	return err
}

// Jobs lists the job specs.
func (c *Client) Jobs(ctx context.Context) ([]control.Job, error) {
	var j []control.Job
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/jobs", idempotent: true}, &j)
	return j, err
}

// SubmitJob stores the spec of job name with its partition count
// (partitions 0: the nodes ask the job's source for it).
func (c *Client) SubmitJob(ctx context.Context, name string, spec []byte, partitions int32) (control.Job, error) {
	return c.SubmitJobWith(ctx, name, spec, SubmitOptions{Partitions: partitions})
}

// SubmitOptions modify SubmitJobWith.
type SubmitOptions struct {
	// Partitions is the job's partition count (0: the nodes ask the source).
	Partitions int32
	// AllowStateReset accepts a spec whose keyed state is incompatible with
	// the checkpointed one by dropping the job's checkpoints (the
	// partitions start again from source.start_offset); without it such an
	// update is refused with control.ErrConflict.
	AllowStateReset bool
	// FromSavepoint, when not 0, starts every partition from that complete
	// savepoint of the job (see Savepoint); excludes AllowStateReset.
	FromSavepoint uint64
}

// SubmitJobWith stores the spec of job name (a new revision of an existing
// one rolls out to every partition).
func (c *Client) SubmitJobWith(ctx context.Context, name string, spec []byte, o SubmitOptions) (control.Job, error) {
	var j control.Job
	q := url.Values{}
	if o.Partitions > 0 {
		q.Set("partitions", strconv.FormatInt(int64(o.Partitions), 10))
	}
	if o.AllowStateReset {
		q.Set("allow_state_reset", "true")
	}
	if o.FromSavepoint != 0 {
		q.Set("from_savepoint", strconv.FormatUint(o.FromSavepoint, 10))
	}
	_, err := c.do(ctx, request{method: http.MethodPut, path: "/v1/jobs/" + url.PathEscape(name), query: q, body: spec}, &j)
	return j, err
}

// Leases returns the partition leases of job ("" = every job) from the
// answering node's replica.
func (c *Client) Leases(ctx context.Context, job string) ([]control.Lease, error) {
	var l []control.Lease
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/leases", query: jobQuery(job), idempotent: true}, &l)
	return l, err
}

// LeaseHistory returns the retained lease events of job ("" = every job)
// and partition (< 0 = every partition), in Raft order.
func (c *Client) LeaseHistory(ctx context.Context, job string, partition int32) ([]control.LeaseEvent, error) {
	q := jobQuery(job)
	if partition >= 0 {
		q.Set("partition", strconv.FormatInt(int64(partition), 10))
	}
	var h []control.LeaseEvent
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/leases/history", query: q, idempotent: true}, &h)
	return h, err
}

// Partitions returns every partition of job ("" = every job) with owner,
// epoch, desired owner, state and progress, as gathered by the answering
// node.
func (c *Client) Partitions(ctx context.Context, job string) ([]control.PartitionInfo, error) {
	var p []control.PartitionInfo
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/partitions", query: jobQuery(job), idempotent: true}, &p)
	return p, err
}

// Checkpoints returns the retained checkpoints of job ("" = every job).
func (c *Client) Checkpoints(ctx context.Context, job string) ([]control.Checkpoint, error) {
	var cs []control.Checkpoint
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/checkpoints", query: jobQuery(job), idempotent: true}, &cs)
	return cs, err
}

func jobQuery(job string) url.Values {
	q := url.Values{}
	if job != "" {
		q.Set("job", job)
	}
	return q
}

// SavepointOptions modify Savepoint.
type SavepointOptions struct {
	// Timeout bounds the wait for every partition's ack; 0: the server
	// default, control.DefaultSavepointTimeout.
	Timeout time.Duration
	// Cancel stops the job with the savepoint: it is cancelled when the
	// savepoint completes (not when it is aborted).
	Cancel bool
}

// Savepoint takes a savepoint of job and returns its record once every
// partition acked it: its id and per-partition offsets and snapshots.
// o.Timeout bounds the wait; a savepoint aborted or not complete in time is an error
// wrapping control.ErrConflict, an unknown job control.ErrNotFound. The
// request is not retried after a transport error (it may have started).
func (c *Client) Savepoint(ctx context.Context, job string, o SavepointOptions) (control.Checkpoint, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = control.DefaultSavepointTimeout
	}
	q := url.Values{"timeout": {timeout.String()}}
	if o.Cancel {
		q.Set("cancel", "true")
	}
	var cp control.Checkpoint
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/jobs/" + url.PathEscape(job) + "/savepoints", query: q, timeout: timeout + c.cfg.RequestTimeout}, &cp)
	return cp, err
}

// Savepoints returns the savepoints of job (of a deleted job too),
// ascending by id; control.ErrNotFound when the job neither exists nor has
// savepoints.
func (c *Client) Savepoints(ctx context.Context, job string) ([]control.Checkpoint, error) {
	var cs []control.Checkpoint
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/jobs/" + url.PathEscape(job) + "/savepoints", idempotent: true}, &cs)
	return cs, err
}

// DeleteSavepoint deletes savepoint id of job (control.ErrNotFound if it
// has none of that id); the leader then deletes its snapshots.
func (c *Client) DeleteSavepoint(ctx context.Context, job string, id uint64) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/jobs/" + url.PathEscape(job) + "/savepoints/" + strconv.FormatUint(id, 10)}, nil)
	return err
}

// DeleteJob removes a job spec.
func (c *Client) DeleteJob(ctx context.Context, name string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/jobs/" + url.PathEscape(name)}, nil)
	return err
}

// retryBackoff returns the delays between the attempts of one request:
// 25 ms doubling to 500 ms, ±20 % jitter.
func retryBackoff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: 25 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 500 * time.Millisecond}
}

// do sends req with the retry policy of the package doc and decodes a 200
// answer into out (if not nil).
func (c *Client) do(ctx context.Context, req request, out any) (http.Header, error) {
	deadline := time.Now().Add(c.cfg.RetryTimeout)
	b := retryBackoff()
	start := int(c.cur.Load())
	refused := map[int]bool{}
	for attempt := 0; ; attempt++ {
		i := (start + attempt) % len(c.addrs)
		if req.pinned {
			i = 0
		}
		h, err, retry := c.attempt(ctx, c.addrs[i], req, out)
		if !retry {
			if err == nil && !req.pinned {
				c.cur.Store(int64(i))
			}
			return h, err
		}
		var ue *UnreachableError
		if errors.As(err, &ue) && ue.Refused {
			refused[i] = true
		} else {
			delete(refused, i)
		}
		if c.cfg.FailFastRefused && (req.pinned && refused[0] || len(refused) == len(c.addrs)) {
			return nil, err
		}
		if isDialError(err) && !req.pinned {
			c.cur.Store(int64((i + 1) % len(c.addrs))) // next call starts elsewhere
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		// Rotate quickly through the other nodes after a refused
		// connection; back off after a full round.
		if req.pinned || (attempt+1)%len(c.addrs) == 0 || !isDialError(err) {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
			case <-time.After(b.NextBackOff()):
			}
		}
	}
}

// doAt sends req to one address with the retry policy but no rotation.
func (c *Client) doAt(ctx context.Context, addr string, req request, out any) (http.Header, error) {
	deadline := time.Now().Add(c.cfg.RetryTimeout)
	b := retryBackoff()
	for {
		h, err, retry := c.attempt(ctx, addr, req, out)
		if !retry || ctx.Err() != nil || time.Now().After(deadline) {
			return h, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(b.NextBackOff()):
		}
	}
}

// attempt makes one HTTP request. retry reports that err certainly had no
// effect (or req is idempotent) and another attempt may be made.
func (c *Client) attempt(ctx context.Context, base string, req request, out any) (_ http.Header, err error, retry bool) {
	timeout := req.timeout
	if timeout <= 0 {
		timeout = c.cfg.RequestTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := base + req.path
	if len(req.query) > 0 {
		u += "?" + req.query.Encode()
	}
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(actx, req.method, u, body)
	if err != nil {
		return nil, err, false
	}
	if c.cfg.Token != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		if isDialError(err) {
			return nil, &UnreachableError{Addr: base, Refused: errors.Is(err, syscall.ECONNREFUSED), Err: err}, true
		}
		if req.idempotent {
			return nil, fmt.Errorf("client: %s %s: %w", req.method, u, err), true
		}
		return nil, fmt.Errorf("%w: %s %s: %v", control.ErrUnknownOutcome, req.method, u, err), false
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		if req.idempotent {
			return nil, fmt.Errorf("client: reading answer of %s %s: %w", req.method, u, err), true
		}
		return nil, fmt.Errorf("%w: reading answer of %s %s: %v", control.ErrUnknownOutcome, req.method, u, err), false
	}
	if resp.StatusCode != http.StatusOK {
		var eb control.ErrorBody
		apiErr := &control.APIError{Status: resp.StatusCode, Code: control.CodeInternal, Message: strings.TrimSpace(string(data))}
		if json.Unmarshal(data, &eb) == nil && eb.Code != "" {
			apiErr.Code, apiErr.Message = eb.Code, eb.Error
		}
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable:
			return nil, apiErr, true
		case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout:
			if apiErr.Code == control.CodeInternal {
				apiErr.Code = control.CodeUnknownOutcome
			}
			return nil, apiErr, req.idempotent
		}
		return nil, apiErr, false
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("client: decoding answer of %s %s: %w", req.method, u, err), false
		}
	}
	return resp.Header, nil, false
}

// UnreachableError is a failed connection to a node: nothing listens at
// Addr (Refused), or the dial failed otherwise (timeout, no route, DNS).
// It wraps control.ErrNoLeader (the request had no effect and may be
// retried elsewhere) and the dial error.
type UnreachableError struct {
	Addr    string
	Refused bool
	Err     error
}

func (e *UnreachableError) Error() string {
	if e.Refused {
		return fmt.Sprintf("connection refused to %s (is an eddy node listening there? check --addr or EDDY_ADDR)", e.Addr)
	}
	return fmt.Sprintf("%s unreachable: %v", e.Addr, e.Err)
}

// Unwrap returns control.ErrNoLeader and the dial error.
func (e *UnreachableError) Unwrap() []error { return []error{control.ErrNoLeader, e.Err} }

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
