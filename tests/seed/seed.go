// Package seed gives the randomised unit tests of a package one -seed
// flag and a seed every test prints, so that a failure can be replayed:
//
//	go test ./control -run TestX -seed 1234
//
// Test packages with schedules of their own (tests/faults, tests/chaos,
// tests/crash, ...) keep their own -seed flag with its own help text.
package seed

import (
	"flag"
	"math/rand/v2"
	"testing"
)

var flagSeed = flag.Uint64("seed", 0, "seed of the randomised tests (0 = random); each test prints the seed it used")

// For returns the -seed flag, or a random seed when it is 0, and logs it
// on t as "seed N (replay with -seed=N)".
func For(t testing.TB) uint64 {
	t.Helper()
	s := *flagSeed
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d (replay with -seed=%d)", s, s)
	return s
}
