package control

import "errors"

// Sentinel errors. Errors returned by this package and by control/client wrap
// one of them; test with errors.Is.
var (
	// ErrInvalid: the request is malformed (bad key, bad JSON, bad
	// parameter). HTTP 400. Such a request never reaches the Raft log.
	ErrInvalid = errors.New("control: invalid request")
	// ErrTooLarge: a value or body exceeds Config.MaxValueBytes. HTTP 413.
	ErrTooLarge = errors.New("control: value too large")
	// ErrNotFound: the key, job or record does not exist. HTTP 404.
	ErrNotFound = errors.New("control: not found")
	// ErrConflict: a compare-and-set, lease or checkpoint precondition
	// failed; nothing was changed. HTTP 409.
	ErrConflict = errors.New("control: conflict")
	// ErrUnauthorized: a write without the right bearer token. HTTP 401.
	ErrUnauthorized = errors.New("control: unauthorized")
	// ErrNotLeader: this node is not the Raft leader and the request was
	// not applied; retry (on any node). HTTP 503.
	ErrNotLeader = errors.New("control: not the leader")
	// ErrNoLeader: the cluster has no reachable leader right now; the
	// request was not applied; retry later. HTTP 503.
	ErrNoLeader = errors.New("control: no leader")
	// ErrUnknownOutcome: the write was sent to the leader but no answer came
	// back (leadership lost, leader died, timeout): it may or may not have
	// been applied. Do not blindly retry non-idempotent writes. HTTP 504.
	ErrUnknownOutcome = errors.New("control: write outcome unknown")
	// ErrClosed: the node is shutting down. HTTP 503.
	ErrClosed = errors.New("control: node closed")
)

// Error codes carried in the JSON error body ({"error": msg, "code": code})
// of the HTTP API; control/client maps them back to the sentinels.
const (
	CodeInvalid        = "invalid"
	CodeTooLarge       = "too_large"
	CodeNotFound       = "not_found"
	CodeConflict       = "conflict"
	CodeUnauthorized   = "unauthorized"
	CodeNotLeader      = "not_leader"
	CodeNoLeader       = "no_leader"
	CodeUnknownOutcome = "unknown_outcome"
	CodeClosed         = "closed"
	CodeMethod         = "method_not_allowed"
	CodeInternal       = "internal"
)

// codeErrors maps error codes to sentinels and HTTP status codes.
var codeErrors = []struct {
	code   string
	err    error
	status int
}{
	{CodeInvalid, ErrInvalid, 400},
	{CodeTooLarge, ErrTooLarge, 413},
	{CodeNotFound, ErrNotFound, 404},
	{CodeConflict, ErrConflict, 409},
	{CodeUnauthorized, ErrUnauthorized, 401},
	{CodeNotLeader, ErrNotLeader, 503},
	{CodeNoLeader, ErrNoLeader, 503},
	{CodeUnknownOutcome, ErrUnknownOutcome, 504},
	{CodeClosed, ErrClosed, 503},
}

// ErrorCode returns the API error code and HTTP status for err.
func ErrorCode(err error) (code string, status int) {
	for _, c := range codeErrors {
		if errors.Is(err, c.err) {
			return c.code, c.status
		}
	}
	return CodeInternal, 500
}

// ErrorForCode returns the sentinel of an API error code, or nil if the code
// is unknown.
func ErrorForCode(code string) error {
	for _, c := range codeErrors {
		if c.code == code {
			return c.err
		}
	}
	return nil
}
