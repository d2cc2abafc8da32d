package control

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eddy-iot/eddy/control/ui"
	"github.com/eddy-iot/eddy/sinks/secret"
)

// MaxWait is the longest blocking-query wait (?wait=); longer values are
// capped. DefaultWait applies when ?index is given without ?wait.
const (
	MaxWait     = 10 * time.Minute
	DefaultWait = 5 * time.Minute
)

// Handler returns the node's HTTP API:
//
//	GET    /v1/config?prefix=P[&index=N&wait=D][&consistent]  list (and watch) keys
//	GET    /v1/config/{key}[?consistent][&index=N&wait=D][&raw]
//	PUT    /v1/config/{key}[?cas=REV]     body = value
//	DELETE /v1/config/{key}[?cas=REV]
//	GET    /v1/jobs, GET|PUT|DELETE /v1/jobs/{name}  (GET: spec, state, status)
//	PUT    /v1/jobs/{name}[?partitions=N][&allow_state_reset]  body = job spec (YAML)
//	POST   /v1/jobs/{name}/cancel          stop the job on every node
//	GET    /v1/leases[?job=J], GET /v1/leases/history[?job=J&partition=P&limit=N]
//	GET    /v1/partitions[?job=J]         leases, desired owners, holders' reports
//	GET    /v1/local/partitions           partitions running on this node
//	GET    /v1/checkpoints[?job=J]
//	GET    /v1/cluster/members, GET /v1/cluster/raft
//	POST   /v1/cluster/leave, POST /v1/cluster/raft/{promote,remove} {"id": ID}
//	POST   /v1/internal/apply             (node to node)
//	GET    /metrics, /healthz (Health), /readyz
//	GET    /, /ui/{file}                  the read-only web UI (package ui)
//
// Every write (PUT, DELETE, POST) needs the API token or a CA-signed client
// certificate (see authorize); without either it is 401, also on a node
// with no token configured. GET responses never hold a password: job specs
// pass through secret.RedactSpec.
//
// Errors are JSON ErrorBody with 400, 401, 404, 405, 409, 413, 503 or 504.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/config", n.handleList)
	mux.HandleFunc("GET /v1/config/{key...}", n.handleGet)
	mux.HandleFunc("PUT /v1/config/{key...}", n.handlePut)
	mux.HandleFunc("DELETE /v1/config/{key...}", n.handleDelete)
	mux.HandleFunc("GET /v1/jobs", n.handleJobs)
	mux.HandleFunc("GET /v1/jobs/{name}", n.handleJobGet)
	mux.HandleFunc("PUT /v1/jobs/{name}", n.handleJobPut)
	mux.HandleFunc("DELETE /v1/jobs/{name}", n.handleJobDelete)
	mux.HandleFunc("POST /v1/jobs/{name}/cancel", n.handleJobCancel)
	mux.HandleFunc("POST /v1/jobs/{name}/savepoints", n.handleSavepointCreate)
	mux.HandleFunc("GET /v1/jobs/{name}/savepoints", n.handleSavepointList)
	mux.HandleFunc("DELETE /v1/jobs/{name}/savepoints/{id}", n.handleSavepointDelete)
	mux.HandleFunc("GET /v1/leases", n.handleLeases)
	mux.HandleFunc("GET /v1/leases/history", n.handleLeaseHistory)
	mux.HandleFunc("GET /v1/partitions", n.handlePartitions)
	mux.HandleFunc("GET /v1/local/partitions", n.handleLocalPartitions)
	mux.HandleFunc("GET /v1/partitions/{job}/{partition}", n.handlePartitionLookup)
	mux.HandleFunc("GET /v1/checkpoints", n.handleCheckpoints)
	mux.HandleFunc("GET /v1/cluster/members", n.handleMembers)
	mux.HandleFunc("GET /v1/cluster/raft", n.handleRaft)
	mux.HandleFunc("POST /v1/cluster/leave", n.handleLeave)
	mux.HandleFunc("POST /v1/cluster/raft/promote", n.handleServer(n.promoteServer))
	mux.HandleFunc("POST /v1/cluster/raft/remove", n.handleServer(n.removeServer))
	mux.HandleFunc("POST /v1/internal/apply", n.handleInternalApply)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.cfg.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, Health{Status: "ok", ID: n.cfg.ID, PID: os.Getpid()})
	})
	mux.HandleFunc("GET /readyz", n.handleReady)
	page := ui.Handler()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /ui/", page)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { n.handleNoRoute(mux, w, r) })
	return &apiHandler{n: n, mux: mux}
}

type apiHandler struct {
	n   *Node
	mux *http.ServeMux
}

func (h *apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() { h.n.metrics.httpRequests.WithLabelValues(r.Method, strconv.Itoa(sw.status)).Inc() }()
	// Keys are validated before the mux sees the path, which would
	// otherwise redirect non-canonical paths ("a/../b", "a//b").
	for _, p := range []string{"/v1/config/", "/v1/jobs/"} {
		if rest, ok := strings.CutPrefix(r.URL.Path, p); ok {
			var err error
			if p == "/v1/config/" {
				err = ValidateKey(rest)
			} else {
				name, _, _ := strings.Cut(rest, "/") // /cancel, /savepoints[/{id}]
				err = ValidateName("job", name)
			}
			if err != nil {
				writeError(sw, err)
				return
			}
		}
	}
	switch r.Method {
	case http.MethodPut, http.MethodDelete, http.MethodPost, http.MethodPatch:
		if err := h.n.authorize(r); err != nil {
			writeError(sw, err)
			return
		}
	}
	h.mux.ServeHTTP(sw, r)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// authorize checks a write (PUT, DELETE, POST, PATCH). Writes are never
// open: a request is authorised by "Authorization: Bearer <token>" equal to
// Config.APIToken (compared in constant time), or, with TLS, by a client
// certificate that verifies against the cluster CA (TLSConfig.CAFile) —
// the certificates that may join Raft, and so could change any state
// anyway. A node without an API token (and without TLS) refuses every
// write with 401 and a message that says how to configure one — except the
// node-to-node POST /v1/internal/apply, which such a cluster needs to run at
// all; reads stay open. This is a deliberate choice over a token generated per node: the
// nodes forward writes to the leader with their token, so a per-node
// token would fail on every follower of a multi-node cluster, while one
// token file shared by all nodes (and eddy ctl --token-file) works the
// same for one node and for many.
func (n *Node) authorize(r *http.Request) error {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return nil // a client certificate signed by the cluster CA
	}
	if n.cfg.APIToken == "" {
		if r.URL.Path == "/v1/internal/apply" && r.TLS == nil {
			// Node-to-node forwarding (a follower's lease renewals, its
			// checkpoint acks) on a cluster with neither a token nor
			// TLS: refusing it would silently stop every follower's
			// partitions. It grants nothing the unauthenticated Raft and
			// gossip ports of such a cluster do not already grant.
			return nil
		}
		return fmt.Errorf("%w: %s %s: this node has no API token, so writes (job submit/cancel/delete, config, cluster changes) are refused; "+
			"start every node with the same --api-token-file FILE (or $EDDY_TOKEN), e.g. FILE made by: openssl rand -hex 32 > FILE && chmod 600 FILE; "+
			"then eddy ctl --token-file FILE (or $EDDY_TOKEN) sends it as \"Authorization: Bearer <token>\"", ErrUnauthorized, r.Method, r.URL.Path)
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(n.cfg.APIToken)) != 1 {
		return fmt.Errorf("%w: writes need the header \"Authorization: Bearer <token>\" with the cluster's API token (eddy ctl: --token-file FILE or $EDDY_TOKEN)", ErrUnauthorized)
	}
	return nil
}

// handleNoRoute answers 405 when the path exists for another method, else
// 404.
func (n *Node) handleNoRoute(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeJSON(w, http.StatusMethodNotAllowed, ErrorBody{
			Error: fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")),
			Code:  CodeMethod,
		})
		return
	}
	writeJSON(w, http.StatusNotFound, ErrorBody{Error: fmt.Sprintf("no such route: %s %s (see /v1/config, /v1/cluster/members, /v1/cluster/raft, or / for the web UI)", r.Method, r.URL.Path), Code: CodeNotFound})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var apiErr *APIError
	if errors.As(err, &apiErr) { // relayed from another node as is
		writeJSON(w, apiErr.Status, ErrorBody{Error: apiErr.Message, Code: apiErr.Code})
		return
	}
	code, status := ErrorCode(err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="eddy"`)
	}
	writeJSON(w, status, ErrorBody{Error: err.Error(), Code: code})
}

// query checks that r has no query parameters besides allowed.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: bad query string: %v", ErrInvalid, err)
	}
	for k := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			if len(allowed) == 0 {
				return nil, fmt.Errorf("%w: unknown query parameter %q (this route takes none)", ErrInvalid, k)
			}
			return nil, fmt.Errorf("%w: unknown query parameter %q (allowed: %s)", ErrInvalid, k, strings.Join(allowed, ", "))
		}
	}
	return q, nil
}

// boolParam parses a boolean query parameter: absent = false, present without a
// value = true.
func boolParam(q url.Values, name string) (bool, error) {
	if _, ok := q[name]; !ok {
		return false, nil
	}
	v := q.Get(name)
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: ?%s=%q must be true or false", ErrInvalid, name, v)
	}
	return b, nil
}

func uintParam(q url.Values, name string) (uint64, bool, error) {
	if _, ok := q[name]; !ok {
		return 0, false, nil
	}
	v, err := strconv.ParseUint(q.Get(name), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w: ?%s=%q must be a non-negative integer", ErrInvalid, name, q.Get(name))
	}
	return v, true, nil
}

// blocking parses ?index=N&wait=D.
func blocking(q url.Values) (index uint64, wait time.Duration, ok bool, err error) {
	index, ok, err = uintParam(q, "index")
	if err != nil {
		return 0, 0, false, err
	}
	if _, has := q["wait"]; has {
		if !ok {
			return 0, 0, false, fmt.Errorf("%w: ?wait needs ?index (the index returned by the previous read)", ErrInvalid)
		}
		wait, err = time.ParseDuration(q.Get("wait"))
		if err != nil || wait <= 0 {
			return 0, 0, false, fmt.Errorf("%w: ?wait=%q must be a positive duration such as 30s", ErrInvalid, q.Get("wait"))
		}
	} else {
		wait = DefaultWait
	}
	if wait > MaxWait {
		wait = MaxWait
	}
	return index, wait, ok, nil
}

// waitView blocks (index > 0) until idx(view) > index or wait passes, and
// returns the view to answer with.
func (n *Node) waitView(r *http.Request, index uint64, wait time.Duration, idx func(View) uint64) View {
	if index == 0 {
		return n.fsm.View()
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel) // node closing ends long polls
	defer stop()
	v, _ := n.fsm.Wait(ctx, func(v View) bool { return idx(v) > index })
	return v
}

// consistentRead prepares a leader-verified read. It returns done=true when
// the response was already written (forwarded to the leader, or an error).
func (n *Node) consistentRead(w http.ResponseWriter, r *http.Request) (done bool) {
	if n.raft.State() != raft.Leader {
		if r.Header.Get(ForwardedHeader) != "" {
			writeError(w, ErrNotLeader)
			return true
		}
		if n.forwardRead(w, r) {
			return true
		}
		// This node became the leader meanwhile: serve the read here.
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.LeaderWait)
	defer cancel()
	if err := n.readBarrier(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %v", ErrNoLeader, err)
		}
		writeError(w, err)
		return true
	}
	return false
}

// prepareRead reads ?consistent, ?index and ?wait and brings this node's
// view up to date for a read: leader-verified with ?consistent (a follower
// forwards the read), else up to the writes acknowledged through this node.
// done reports that the response is already written (an error, or the
// forwarded answer).
func (n *Node) prepareRead(w http.ResponseWriter, r *http.Request, q url.Values) (index uint64, wait time.Duration, done bool) {
	consistent, err := boolParam(q, "consistent")
	if err != nil {
		writeError(w, err)
		return 0, 0, true
	}
	index, wait, _, err = blocking(q)
	if err != nil {
		writeError(w, err)
		return 0, 0, true
	}
	if consistent {
		return index, wait, n.consistentRead(w, r)
	}
	n.syncLocal(r.Context())
	return index, wait, false
}

func setIndex(w http.ResponseWriter, idx uint64) {
	if idx == 0 {
		idx = 1 // so that ?index=<returned> always blocks
	}
	w.Header().Set(IndexHeader, strconv.FormatUint(idx, 10))
}

func (n *Node) handleGet(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q, err := query(r, "consistent", "index", "wait", "raw")
	if err != nil {
		writeError(w, err)
		return
	}
	raw, err := boolParam(q, "raw")
	if err != nil {
		writeError(w, err)
		return
	}
	index, wait, done := n.prepareRead(w, r, q)
	if done {
		return
	}
	v := n.waitView(r, index, wait, func(v View) uint64 { return v.KeyIndex(key) })
	setIndex(w, v.KeyIndex(key))
	e, ok := v.Get(key)
	if !ok {
		writeError(w, fmt.Errorf("%w: key %q", ErrNotFound, key))
		return
	}
	if raw {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, e.Value)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (n *Node) handleList(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "prefix", "consistent", "index", "wait")
	if err != nil {
		writeError(w, err)
		return
	}
	prefix := q.Get("prefix")
	if err := ValidatePrefix(prefix); err != nil {
		writeError(w, err)
		return
	}
	index, wait, done := n.prepareRead(w, r, q)
	if done {
		return
	}
	v := n.waitView(r, index, wait, func(v View) uint64 { return v.PrefixIndex(prefix) })
	idx := v.PrefixIndex(prefix)
	setIndex(w, idx)
	writeJSON(w, http.StatusOK, KVList{Index: max(idx, 1), Entries: v.List(prefix)})
}

// readBody reads at most limit bytes of the body; more is ErrTooLarge.
func readBody(w http.ResponseWriter, r *http.Request, limit int) ([]byte, error) {
	if r.ContentLength > int64(limit) {
		return nil, fmt.Errorf("%w: body is %d bytes, the limit is %d", ErrTooLarge, r.ContentLength, limit)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: body is larger than the limit of %d bytes", ErrTooLarge, limit)
		}
		return nil, fmt.Errorf("%w: reading body: %v", ErrInvalid, err)
	}
	return b, nil
}

func (n *Node) handlePut(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q, err := query(r, "cas")
	if err != nil {
		writeError(w, err)
		return
	}
	cas, hasCAS, err := uintParam(q, "cas")
	if err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(w, r, n.cfg.MaxValueBytes)
	if err != nil {
		writeError(w, err)
		return
	}
	cmd := KVSet{Key: key, Value: string(body)}
	if hasCAS {
		cmd.CAS = &cas
	}
	res, err := n.Apply(r.Context(), cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	setIndex(w, res.Index)
	writeJSON(w, http.StatusOK, res.Entry)
}

func (n *Node) handleDelete(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q, err := query(r, "cas")
	if err != nil {
		writeError(w, err)
		return
	}
	cas, hasCAS, err := uintParam(q, "cas")
	if err != nil {
		writeError(w, err)
		return
	}
	cmd := KVDelete{Key: key}
	if hasCAS {
		cmd.CAS = &cas
	}
	res, err := n.Apply(r.Context(), cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	setIndex(w, res.Index)
	writeJSON(w, http.StatusOK, DeleteResult{Key: key, Deleted: res.Deleted, Index: res.Index})
}

func (n *Node) handleJobs(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	n.syncLocal(r.Context())
	jobs := n.fsm.View().JobInfos()
	for i := range jobs {
		jobs[i].Spec = secret.RedactSpec(jobs[i].Spec)
	}
	writeJSON(w, http.StatusOK, jobs)
}

func (n *Node) handleJobGet(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	n.syncLocal(r.Context())
	j, ok := n.fsm.View().JobInfo(r.PathValue("name"))
	if !ok {
		writeError(w, fmt.Errorf("%w: job %q", ErrNotFound, r.PathValue("name")))
		return
	}
	j.Spec = secret.RedactSpec(j.Spec)
	writeJSON(w, http.StatusOK, j)
}

func (n *Node) handleJobCancel(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	res, err := n.Apply(r.Context(), JobCancel{Name: r.PathValue("name")})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": r.PathValue("name"), "cancelled": true, "index": res.Index})
}

func (n *Node) handleJobPut(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "partitions", "allow_state_reset", "from_savepoint")
	if err != nil {
		writeError(w, err)
		return
	}
	from, _, err := uintParam(q, "from_savepoint")
	if err != nil {
		writeError(w, err)
		return
	}
	reset, err := boolParam(q, "allow_state_reset")
	if err != nil {
		writeError(w, err)
		return
	}
	partitions, _, err := uintParam(q, "partitions")
	if err != nil || partitions > MaxPartitions {
		writeError(w, fmt.Errorf("%w: ?partitions=%q must be a partition count in 0..%d", ErrInvalid, q.Get("partitions"), MaxPartitions))
		return
	}
	body, err := readBody(w, r, n.cfg.MaxValueBytes)
	if err != nil {
		writeError(w, err)
		return
	}
	put := JobPut{Name: r.PathValue("name"), Spec: string(body), Partitions: int32(partitions), ResetState: reset, FromSavepoint: from}
	if err := put.Validate(); err != nil {
		writeError(w, err)
		return
	}
	if v := n.cfg.ValidateJob; v != nil {
		var prev *Job
		if j, ok := n.fsm.View().Job(put.Name); ok {
			prev = &j
		}
		if err := v(put, prev); err != nil {
			if !errors.Is(err, ErrConflict) {
				err = fmt.Errorf("%w: job %s: %w", ErrInvalid, put.Name, err)
			}
			writeError(w, err)
			return
		}
	}
	res, err := n.Apply(r.Context(), put)
	if err != nil {
		writeError(w, err)
		return
	}
	j := res.Job
	if j != nil {
		cp := *j
		cp.Spec = secret.RedactSpec(cp.Spec)
		j = &cp
	}
	writeJSON(w, http.StatusOK, j)
}

func (n *Node) handleJobDelete(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	res, err := n.Apply(r.Context(), JobDelete{Name: r.PathValue("name")})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": r.PathValue("name"), "deleted": res.Deleted, "index": res.Index})
}

func (n *Node) handleLeases(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "job")
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n.fsm.View().Leases(q.Get("job")))
}

func (n *Node) handleCheckpoints(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "job")
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n.fsm.View().Checkpoints(q.Get("job")))
}

func (n *Node) handleMembers(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n.MemberInfos())
}

// MemberInfos returns this node's view of the members with their Raft roles.
func (n *Node) MemberInfos() []MemberInfo {
	roles := map[string]string{}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			roles[string(s.ID)] = map[bool]string{true: "voter", false: "nonvoter"}[s.Suffrage == raft.Voter]
		}
	}
	_, leader := n.raft.LeaderWithID()
	out := []MemberInfo{}
	for _, m := range n.members.Members() {
		role, ok := roles[m.ID]
		if !ok {
			role = "none"
		}
		out = append(out, MemberInfo{
			ID: m.ID, HTTPAddr: m.HTTPAddr, RaftAddr: m.RaftAddr, GossipAddr: m.GossipAddr,
			Status: m.Status.String(), Since: m.Since, Raft: role, Leader: string(leader) == m.ID, Leaving: m.Leaving,
		})
	}
	return out
}

func (n *Node) handleRaft(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n.Status())
}

func (n *Node) handleReady(w http.ResponseWriter, r *http.Request) {
	if !n.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, ErrorBody{Error: "not ready: no known leader, or still applying the log", Code: CodeNoLeader})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "id": n.cfg.ID})
}

func (n *Node) handleLeave(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.ApplyTimeout)
	defer cancel()
	if err := n.Leave(ctx); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": n.cfg.ID, "left": true})
}

func (n *Node) handleServer(fn func(context.Context, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := query(r); err != nil {
			writeError(w, err)
			return
		}
		body, err := readBody(w, r, 4096)
		if err != nil {
			writeError(w, err)
			return
		}
		var req serverRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, fmt.Errorf("%w: invalid JSON body (want {\"id\": \"<node id>\"}): %v", ErrInvalid, err))
			return
		}
		if err := ValidateName("node", req.ID); err != nil {
			writeError(w, err)
			return
		}
		if r.Header.Get(ForwardedHeader) != "" && !n.IsLeader() {
			writeError(w, ErrNotLeader)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), n.cfg.ApplyTimeout)
		defer cancel()
		if err := fn(ctx, req.ID); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": req.ID, "ok": true})
	}
}

func (n *Node) handleInternalApply(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	if r.Header.Get(ForwardedHeader) == "" {
		writeError(w, fmt.Errorf("%w: /v1/internal/apply is for node-to-node forwarding only", ErrInvalid))
		return
	}
	data, err := readBody(w, r, n.cfg.MaxValueBytes+64<<10)
	if err != nil {
		writeError(w, err)
		return
	}
	cmd, err := DecodeCommand(data)
	if err == nil {
		err = cmd.Validate()
	}
	if err == nil {
		err = n.checkSize(cmd)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.ApplyTimeout)
	defer cancel()
	res, err := n.applyEncoded(ctx, data, true)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// --- node to node ---

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (n *Node) peerRequest(ctx context.Context, method, addr, uri string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.scheme+"://"+addr+uri, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set(ForwardedHeader, n.cfg.ID)
	if n.cfg.APIToken != "" {
		req.Header.Set("Authorization", "Bearer "+n.cfg.APIToken)
	}
	return n.peer.Do(req)
}

// decodeResponse decodes a 200 response into out, or returns the APIError.
func decodeResponse(resp *http.Response, out any) error {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		if json.Unmarshal(body, &eb) != nil || eb.Code == "" {
			return &APIError{Status: resp.StatusCode, Code: CodeInternal, Message: strings.TrimSpace(string(body))}
		}
		return &APIError{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(body, out)
}

// forwardApply sends an encoded command to the leader at addr.
func (n *Node) forwardApply(ctx context.Context, addr string, data []byte) (Result, error) {
	resp, err := n.peerRequest(ctx, http.MethodPost, addr, "/v1/internal/apply", data)
	if err != nil {
		if isDialError(err) {
			return Result{}, fmt.Errorf("%w: leader %s unreachable: %v", ErrNoLeader, addr, err)
		}
		return Result{}, fmt.Errorf("%w: forwarding to leader %s: %v", ErrUnknownOutcome, addr, err)
	}
	var res Result
	err = decodeResponse(resp, &res)
	return res, err
}

// forwardJSON POSTs body as JSON to path on the node at addr.
func (n *Node) forwardJSON(ctx context.Context, addr, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := n.peerRequest(ctx, http.MethodPost, addr, path, b)
	if err != nil {
		if isDialError(err) {
			return fmt.Errorf("%w: leader %s unreachable: %v", ErrNoLeader, addr, err)
		}
		return fmt.Errorf("%w: forwarding to leader %s: %v", ErrUnknownOutcome, addr, err)
	}
	return decodeResponse(resp, out)
}

// peerRaftStatus reads GET /v1/cluster/raft of the node at addr.
func (n *Node) peerRaftStatus(ctx context.Context, addr string) (RaftStatus, error) {
	var st RaftStatus
	resp, err := n.peerRequest(ctx, http.MethodGet, addr, "/v1/cluster/raft", nil)
	if err != nil {
		return st, err
	}
	err = decodeResponse(resp, &st)
	return st, err
}

// forwardRead proxies a read to the leader and copies its answer, retrying
// (reads are safe to retry) until a leader answers or LeaderWait passes. It
// returns false, without writing, if this node became the leader.
func (n *Node) forwardRead(w http.ResponseWriter, r *http.Request) bool {
	deadline := time.Now().Add(n.cfg.LeaderWait)
	var last error = ErrNoLeader
	for {
		if addr, ok := n.leaderHTTP(); ok && addr != n.cfg.HTTPAddr {
			resp, err := n.peerRequest(r.Context(), http.MethodGet, addr, r.URL.RequestURI(), nil)
			if err == nil {
				if resp.StatusCode != http.StatusServiceUnavailable {
					defer resp.Body.Close()
					for _, h := range []string{"Content-Type", IndexHeader} {
						if v := resp.Header.Get(h); v != "" {
							w.Header().Set(h, v)
						}
					}
					w.WriteHeader(resp.StatusCode)
					_, _ = io.Copy(w, resp.Body)
					return true
				}
				last = decodeResponse(resp, nil)
			} else {
				last = err
			}
		} else if ok && n.IsLeader() {
			return false
		}
		if r.Context().Err() != nil {
			return true
		}
		if time.Now().After(deadline) {
			writeError(w, fmt.Errorf("%w: no leader answered within %v (last: %v)", ErrNoLeader, n.cfg.LeaderWait, last))
			return true
		}
		select {
		case <-r.Context().Done():
			return true
		case <-n.ctx.Done():
			writeError(w, ErrClosed)
			return true
		case <-time.After(20 * time.Millisecond):
		}
	}
}
