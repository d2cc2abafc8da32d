package cluster

import (
	"encoding/json"
	"fmt"

	"github.com/eddy-iot/eddy/control"
)

// MaxMetaBytes is the largest encoded control.Meta memberlist accepts (its
// MetaMaxSize).
const MaxMetaBytes = 512

// encodeMeta is the memberlist node metadata of m: m as JSON.
func encodeMeta(m control.Meta) ([]byte, error) { return json.Marshal(m) }

func decodeMeta(b []byte) (control.Meta, error) {
	var m control.Meta
	if len(b) == 0 {
		return m, fmt.Errorf("cluster: empty node metadata")
	}
	err := json.Unmarshal(b, &m)
	return m, err
}
