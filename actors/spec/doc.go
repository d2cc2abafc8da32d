// Package spec is the job spec: the one parser, validator and converter of
// the YAML that describes a job, on every path a spec takes.
//
//	js, cfg, err := spec.Load(yamlBytes, spec.Options{Mode: spec.Cluster})
//
// Load expands ${NAME} and ${NAME:-default} from the environment
// (Options.Lookup), decodes the YAML into Spec (unknown fields are
// mistakes), parses every sink URL without connecting, refuses the fields
// the mode does not allow and converts the spec to actors.Config
// (Spec.Config), validated. Every mistake is an *Error naming the field
// and its line; Load returns all of them as Errors, wrapping ErrBad, with
// passwords masked and expanded values shown as their ${NAME} reference.
// LoadValue does the same for a Spec built in Go (eddy dev's flags).
//
// The mode is where the job runs: Run (eddy run, eddy dev) or Cluster
// (eddy node, eddy ctl job submit, PUT /v1/jobs). The conversion is the
// same in both; see Mode for the fields a mode allows.
//
// The format: deploy/jobs/iot-work.yaml is the documented example of
// every field, the comments of Spec give each field's unit, default and
// rule, and README.md ("Job specs are checked before they are stored",
// "Secrets") describes the checks and ${NAME} expansion. The bad-spec
// fixtures with their expected messages are cmd/eddy/testdata/jobs.
//
// A stored cluster job is loaded once per Raft revision: the cache is
// cluster/jobs/speccache.go, keyed by control.Job's ModifyIndex (it lives
// there because the revision is the control plane's). Package actors does
// not import spec: the fingerprint of keyed state (actors.StateFingerprint)
// and the configuration types stay in actors.
package spec
