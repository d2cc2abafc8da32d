package spec

import (
	"fmt"
	"strings"
)

// Mode is where a job runs. The conversion of a spec to actors.Config is
// the same in every mode; the mode decides which fields are allowed:
//
//   - Run (eddy run, eddy dev): one process. broadcast.devices_file is
//     read at start and metrics.pushgateway, when set, must be a valid
//     http(s) URL (the final metrics are pushed there).
//   - Cluster (eddy node --job, eddy ctl job submit, PUT /v1/jobs, every
//     node that runs a stored job): broadcast.devices_file and
//     metrics.pushgateway are refused (device data comes from Raft, nodes
//     serve /metrics). checkpoint.ack_timeout is used in this mode only
//     (Spec.CheckpointAckTimeout, the cluster coordinator's abort time);
//     eddy run's local coordinator waits checkpoint.timeout.
type Mode int

const (
	// Run is a job run by one process: eddy run and eddy dev.
	Run Mode = iota
	// Cluster is a job run by eddy nodes.
	Cluster
)

// String returns "run" or "cluster".
func (m Mode) String() string {
	switch m {
	case Run:
		return "run"
	case Cluster:
		return "cluster"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// modeErrors returns the mistakes of the fields mode does not allow (see
// Mode); line gives the line of a field (0 = unknown).
func (s *Spec) modeErrors(m Mode, line func(path string) int) Errors {
	var errs Errors
	if m == Cluster && s.Broadcast.DevicesFile != "" {
		errs = append(errs, &Error{Field: "broadcast.devices_file", Line: line("broadcast.devices_file"),
			Reason: "not used on a cluster: device data comes from Raft (eddy ctl devices import FILE); remove the field"})
	}
	if u := s.Metrics.Pushgateway; u != "" {
		if m == Cluster {
			errs = append(errs, &Error{Field: "metrics.pushgateway", Line: line("metrics.pushgateway"),
				Reason: "only eddy run pushes to a Pushgateway; a cluster's nodes serve /metrics for Prometheus to scrape: remove the field"})
		} else if err := CheckPushgatewayURL(u); err != nil {
			errs = append(errs, &Error{Field: "metrics.pushgateway", Line: line("metrics.pushgateway"), Reason: err.Error()})
		}
	}
	return errs
}

// check returns an error for a Mode that is neither Run nor Cluster (a
// caller's mistake, not the spec's: it does not wrap ErrBad).
func (m Mode) check() error {
	if m != Run && m != Cluster {
		return fmt.Errorf("spec: unknown mode %v (want spec.Run or spec.Cluster)", m)
	}
	return nil
}

// modeError is m.check, then modeErrors as one error of Spec.Config
// (nil when the spec has none).
func (s *Spec) modeError(m Mode) error {
	if err := m.check(); err != nil {
		return err
	}
	es := s.modeErrors(m, func(string) int { return 0 })
	if len(es) == 0 {
		return nil
	}
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = strings.TrimPrefix(e.Error(), "job spec: ")
	}
	return fmt.Errorf("spec: job spec: %s", strings.Join(msgs, "; "))
}
