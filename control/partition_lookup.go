package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// PartitionLookup asks a device partition's virtual actor, wherever it is
// activated, for its status (package cluster/virtual implements it over
// protoactor-go). The answer is served as JSON.
type PartitionLookup func(ctx context.Context, job string, partition int32) (any, error)

// partitionLookupTimeout bounds one GET /v1/partitions/{job}/{partition}.
const partitionLookupTimeout = 5 * time.Second

type lookupHolder struct{ fn PartitionLookup }

// SetPartitionLookup installs the lookup behind GET
// /v1/partitions/{job}/{partition}; nil removes it (the route then answers
// 404 saying virtual actors are off). Safe for concurrent use.
func (n *Node) SetPartitionLookup(fn PartitionLookup) {
	if fn == nil {
		n.partitionLookup.Store(nil)
		return
	}
	n.partitionLookup.Store(&lookupHolder{fn: fn})
}

func (n *Node) handlePartitionLookup(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	p, err := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	if err != nil || p < 0 {
		writeError(w, fmt.Errorf("%w: partition %q: want a number >= 0", ErrInvalid, r.PathValue("partition")))
		return
	}
	h := n.partitionLookup.Load()
	if h == nil {
		writeError(w, fmt.Errorf("%w: virtual actors are off on this node (start eddy node with --actor-addr)", ErrNotFound))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), partitionLookupTimeout)
	defer cancel()
	st, err := h.fn(ctx, r.PathValue("job"), int32(p))
	if errors.Is(err, context.DeadlineExceeded) {
		writeJSON(w, http.StatusGatewayTimeout, ErrorBody{Error: err.Error(), Code: "timeout"})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, ErrorBody{Error: err.Error(), Code: "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, st)
}
