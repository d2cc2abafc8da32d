package actors

// StateFingerprint identifies what the keyed state of a job means: window
// kind, size, slide and gap, out-of-orderness, allowed lateness and max
// gap (the fingerprint stored in every state snapshot). A job restores
// only snapshots of its own fingerprint, so two configurations with
// different fingerprints cannot share checkpoints.
func StateFingerprint(c Config) string { return operatorsFingerprint(c.Operators) }
