package assign

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/eddy-iot/eddy/tests/seed"
)

// The weight function is part of the cluster protocol: nodes of different
// versions must place partitions identically. These values must never change.
func TestWeightIsStable(t *testing.T) {
	cases := []struct {
		key, member string
		want        uint64
	}{
		{"iot-work/0", "n1", 0xe7a0c6aacdb7889d},
		{"iot-work/7", "n2", 0x45716cc5b309b9a4},
		{"", "", 0x25fc6dd36ce04b20},
	}
	for _, c := range cases {
		if got := Weight(c.key, c.member); got != c.want {
			t.Errorf("Weight(%q, %q) = %#x, want %#x (the placement protocol changed)", c.key, c.member, got, c.want)
		}
	}
	// The separator keeps (member, key) pairs apart that concatenate alike.
	if Weight("b/1", "a") == Weight("/1", "ab") {
		t.Error("Weight(\"b/1\", \"a\") == Weight(\"/1\", \"ab\"): member and key are not separated")
	}
}

func TestOwner(t *testing.T) {
	three := []string{"n1", "n2", "n3"}
	cases := []struct {
		name    string
		members []string
		want    string
	}{
		{"no members", nil, ""},
		{"one member", []string{"n9"}, "n9"},
		{"three members", three, Owner("iot-work/3", three)},
		{"order does not matter", []string{"n3", "n1", "n2"}, Owner("iot-work/3", three)},
		{"duplicates do not matter", []string{"n2", "n3", "n1", "n3", "n2"}, Owner("iot-work/3", three)},
	}
	for _, c := range cases {
		if got := Owner("iot-work/3", c.members); got != c.want {
			t.Errorf("%s: Owner = %q, want %q", c.name, got, c.want)
		}
	}
	if got := Owner("iot-work/3", three); !slices.Contains(three, got) {
		t.Errorf("owner %q is not a member", got)
	}
	if PartitionKey("iot-work", 7) != "iot-work/7" {
		t.Errorf("PartitionKey = %q", PartitionKey("iot-work", 7))
	}
	if a := Assign("j", 0, three); len(a) != 0 {
		t.Errorf("Assign of 0 partitions = %v", a)
	}
	if a := Assign("j", 2, nil); len(a) != 2 || a[0] != "" || a[1] != "" {
		t.Errorf("Assign without members = %v, want two empty owners", a)
	}
}

func randomMembers(rng *rand.Rand, n int) []string {
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		id := fmt.Sprintf("node-%d", rng.IntN(1_000_000))
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// within reports whether got is within k standard deviations of a binomial
// count of n trials with probability p.
func within(got, n int, p, k float64) bool {
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	return math.Abs(float64(got)-mean) <= k*sd
}

// TestAssignMovesOnlyWhatItMust checks, on seeded random member sets, the
// two properties placement relies on: removing a node moves exactly that
// node's partitions, and adding one moves about 1/n of all partitions, each
// to the new node. It also checks the balance.
func TestAssignMovesOnlyWhatItMust(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed.For(t), 1))
	const partitions = 3000
	for round := 0; round < 20; round++ {
		n := 2 + rng.IntN(15)
		members := randomMembers(rng, n+1)
		joiner := members[n]
		members = members[:n]
		job := fmt.Sprintf("job-%d", rng.IntN(100))
		before := Assign(job, partitions, members)

		// Balance: every member gets about 1/n.
		load := map[string]int{}
		for _, o := range before {
			load[o]++
		}
		for _, m := range members {
			if !within(load[m], partitions, 1/float64(n), 5) {
				t.Errorf("round %d: %s owns %d of %d partitions with %d members (expected ~%d)", round, m, load[m], partitions, n, partitions/n)
			}
		}

		// A node joins: only partitions that go to it move, about 1/(n+1).
		after := Assign(job, partitions, append(slices.Clone(members), joiner))
		moved := 0
		for p, o := range after {
			if o != before[p] {
				moved++
				if o != joiner {
					t.Fatalf("round %d: join of %s moved partition %d from %s to %s", round, joiner, p, before[p], o)
				}
			}
		}
		if !within(moved, partitions, 1/float64(n+1), 5) {
			t.Errorf("round %d: join moved %d of %d partitions with %d members, expected ~%.0f", round, moved, partitions, n+1, float64(partitions)/float64(n+1))
		}

		// A node leaves: exactly its partitions move.
		gone := members[rng.IntN(n)]
		rest := slices.DeleteFunc(slices.Clone(members), func(m string) bool { return m == gone })
		left := Assign(job, partitions, rest)
		movedOut := 0
		for p, o := range left {
			switch {
			case before[p] == gone:
				movedOut++
				if o == gone {
					t.Fatalf("round %d: partition %d still on removed %s", round, p, gone)
				}
			case o != before[p]:
				t.Fatalf("round %d: removal of %s moved partition %d from %s to %s", round, gone, p, before[p], o)
			}
		}
		if movedOut != load[gone] {
			t.Fatalf("round %d: removal moved %d partitions, %s owned %d", round, movedOut, gone, load[gone])
		}
		if round < 3 {
			t.Logf("round %d: %d members, join moved %d/%d (%.1f%%, ideal %.1f%%), leave moved %d (exactly the leaver's)",
				round, n, moved, partitions, 100*float64(moved)/partitions, 100/float64(n+1), movedOut)
		}
	}
}

func BenchmarkAssign(b *testing.B) {
	members := []string{"n1", "n2", "n3", "n4", "n5"}
	for i := 0; i < b.N; i++ {
		Assign("iot-work", 64, members)
	}
}
