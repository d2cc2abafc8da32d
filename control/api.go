package control

import (
	"fmt"
	"time"
)

// Wire types of the HTTP API (JSON). control/client decodes into them.

// IndexHeader carries the blocking-query index of a read response: pass it
// back as ?index= to wait for the next change.
const IndexHeader = "X-Eddy-Index"

// ForwardedHeader marks a request forwarded by another node (value: that
// node's id). A node never forwards such a request again.
const ForwardedHeader = "X-Eddy-Forwarded"

// KVList is the response of GET /v1/config?prefix=P.
type KVList struct {
	// Index is the prefix's blocking-query index (also in IndexHeader).
	Index   uint64    `json:"index"`
	Entries []KVEntry `json:"entries"`
}

// DeleteResult is the response of DELETE /v1/config/{key}.
type DeleteResult struct {
	Key     string `json:"key"`
	Deleted bool   `json:"deleted"`
	// Index is the Raft index of the delete command.
	Index uint64 `json:"index"`
}

// Health is the answer of GET /healthz: the process is up.
type Health struct {
	Status string `json:"status"` // "ok"
	ID     string `json:"id"`     // node id
	// PID is the node's process id in its own PID namespace (1 in a
	// container): eddy chaos signals local nodes by it.
	PID int `json:"pid"`
}

// MemberInfo is one entry of GET /v1/cluster/members.
type MemberInfo struct {
	ID         string    `json:"id"`
	HTTPAddr   string    `json:"http_addr"`
	RaftAddr   string    `json:"raft_addr"`
	GossipAddr string    `json:"gossip_addr"`
	Status     string    `json:"status"` // alive, failed, left
	Since      time.Time `json:"since"`  // when Status last changed (answering node's clock)
	// Raft is the member's role in the answering node's Raft
	// configuration: "voter", "nonvoter" or "none".
	Raft    string `json:"raft"`
	Leader  bool   `json:"leader"`
	Leaving bool   `json:"leaving,omitempty"`
}

// RaftServer is one server of the Raft configuration.
type RaftServer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// RaftStatus is the response of GET /v1/cluster/raft: the answering node's
// view of Raft.
type RaftStatus struct {
	ID                string       `json:"id"`    // the answering node
	State             string       `json:"state"` // follower, candidate, leader, shutdown
	Term              uint64       `json:"term"`
	LeaderID          string       `json:"leader_id"` // "" when no leader is known
	LeaderAddr        string       `json:"leader_addr"`
	Voters            []RaftServer `json:"voters"`
	NonVoters         []RaftServer `json:"nonvoters"`
	LastIndex         uint64       `json:"last_index"`
	CommitIndex       uint64       `json:"commit_index"`
	AppliedIndex      uint64       `json:"applied_index"`
	FirstIndex        uint64       `json:"first_index"` // first index still in the log (older ones are compacted)
	LastSnapshotIndex uint64       `json:"last_snapshot_index"`
	LastContactMs     int64        `json:"last_contact_ms"` // ms since the leader was heard from; 0 on the leader, -1 never
	VoterTarget       int          `json:"voter_target"`
	FSMKeys           int          `json:"fsm_keys"`
	FSMRestores       uint64       `json:"fsm_restores"`
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// serverRequest is the body of POST /v1/cluster/raft/{promote,remove}.
type serverRequest struct {
	ID string `json:"id"`
}

// APIError is an error answered by a node. It unwraps to the sentinel of
// its Code (ErrConflict, ErrNotFound, ...), so errors.Is works across HTTP.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// Unwrap returns the sentinel of e.Code, or nil.
func (e *APIError) Unwrap() error { return ErrorForCode(e.Code) }
