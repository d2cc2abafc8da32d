//go:build !unix

package state

import "os"

// lockExclusive is a no-op where flock does not exist.
func lockExclusive(*os.File) error { return nil }
