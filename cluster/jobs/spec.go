package jobs

import (
	"fmt"
	"strings"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/control"
)

// ValidateSpec checks the spec of a cluster job the way every node that
// runs it will read it (spec.Load in spec.Cluster mode, ${NAME} expanded
// from this process's environment): it is control.Config.ValidateJob of
// eddy node, so PUT /v1/jobs refuses with 400 a spec that every node would
// refuse. For an update of the stored job prev it also refuses (an error
// wrapping control.ErrConflict: HTTP 409) a spec whose keyed state is
// incompatible with the checkpointed one — a window kind or size, slide,
// session gap, out-of-orderness, allowed lateness or max gap that changed
// (actors.StateFingerprint) — unless put.ResetState drops that state.
func ValidateSpec(put control.JobPut, prev *control.Job) error {
	_, cfg, err := loadClusterSpec(put.Spec)
	if err != nil {
		return err
	}
	if prev == nil || put.ResetState {
		return nil
	}
	_, old, err := specs.load(*prev)
	if err != nil {
		return nil // the stored revision does not load here: nothing to compare
	}
	if a, b := actors.StateFingerprint(old), actors.StateFingerprint(cfg); a != b {
		return fmt.Errorf("%w: job %s: the new spec changes what the keyed state means (%s); the checkpoints of revision %d hold state of the old one, which the new revision cannot restore. Submit with --allow-state-reset (?allow_state_reset) to drop that state: the partitions then start again from source.start_offset",
			control.ErrConflict, put.Name, fingerprintDiff(a, b), prev.ModifyIndex)
	}
	return nil
}

// fingerprintDiff lists the key=value pairs that differ between two
// fingerprints: "size: 60000 → 300000".
func fingerprintDiff(a, b string) string {
	av, bv := strings.Fields(a), strings.Fields(b)
	var out []string
	for i := range min(len(av), len(bv)) {
		if av[i] != bv[i] {
			k, x, _ := strings.Cut(av[i], "=")
			_, y, _ := strings.Cut(bv[i], "=")
			out = append(out, fmt.Sprintf("%s: %s → %s", k, x, y))
		}
	}
	return strings.Join(out, ", ") + " (durations in ms)"
}

// loadClusterSpec reads a spec that is not stored yet (a PUT's) on this
// node; stored jobs are read through specs.load, once per revision.
func loadClusterSpec(text string) (*spec.Spec, actors.Config, error) {
	return loadSpec([]byte(text), spec.Options{Mode: spec.Cluster})
}

// CheckSavepoint checks that the stored job j can take a savepoint: its
// spec loads here and enables checkpoints (checkpoint.storage and a
// positive checkpoint.interval). It is control.Config.CheckSavepoint of
// eddy node.
func CheckSavepoint(j control.Job) error {
	_, cfg, err := specs.load(j)
	if err != nil {
		return err
	}
	if !cfg.Checkpoint.Enabled() {
		return fmt.Errorf("a savepoint needs checkpoints: the spec sets no checkpoint.storage")
	}
	return nil
}
