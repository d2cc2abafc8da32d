package jobs

import (
	"github.com/eddy-iot/eddy/actors"
)

// ValidateSpec checks the spec of a cluster job the way every node that
// runs it will read it (actors.LoadSpec with Cluster set, ${NAME} expanded
// from this process's environment): it is control.Config.ValidateJob of
// eddy node, so PUT /v1/jobs refuses with 400 a spec that every node would
// refuse. name is the job's name in the API (it overrides the spec's name:).
func ValidateSpec(name, spec string) error {
	_, _, err := loadClusterSpec(spec)
	return err
}

// loadClusterSpec reads a stored spec on this node.
func loadClusterSpec(spec string) (*actors.Spec, actors.Config, error) {
	s, cfg, err := actors.LoadSpec([]byte(spec), actors.SpecOptions{Cluster: true})
	return s, cfg, err
}
