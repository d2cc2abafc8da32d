package assign

import (
	"strconv"
)

// Placement of device partitions on nodes by rendezvous hashing, also called
// highest random weight (HRW) hashing (Thaler & Ravishankar, "A Name-Based
// Mapping Scheme for Rendezvous", 1996): every (partition, node) pair gets a
// pseudo-random weight and the partition goes to the node with the highest
// weight. Every node computes the same owner from the same member set, with
// no coordination, and a change of the member set moves only what it must:
//
//   - a node that leaves loses exactly its own partitions, each to the node
//     with the next-highest weight; no other partition moves;
//   - a node that joins takes exactly the partitions for which it now has the
//     highest weight, about 1/n of them (n = members after the join), from
//     their current owners; no other partition moves.
//
// The weight function is part of the cluster protocol: nodes of different
// versions must agree on it, so it must never change. It is
// splitmix64(fnv1a64(member ‖ 0x00 ‖ key)): FNV-1a over the member id, a zero
// byte and the partition key, then the splitmix64 finalizer, which spreads
// FNV's weak high bits over the whole word. Ties (equal weights) go to the
// smaller member id.

// PartitionKey is the placement key (and virtual-actor identity) of device
// partition p of job: "<job>/<p>", e.g. "iot-work/7".
func PartitionKey(job string, p int32) string {
	return job + "/" + strconv.FormatInt(int64(p), 10)
}

// Weight is the rendezvous weight of key on member.
func Weight(key, member string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(member); i++ {
		h ^= uint64(member[i])
		h *= prime64
	}
	h *= prime64 // the 0x00 separator: h ^= 0 is a no-op
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime64
	}
	// splitmix64 finalizer (Steele, Lea & Flood 2014).
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Owner returns the member with the highest rendezvous weight for key, or ""
// when members is empty. The result depends only on the set of members, not
// on their order or on duplicates.
func Owner(key string, members []string) string {
	var best string
	var bestW uint64
	for i, m := range members {
		w := Weight(key, m)
		if i == 0 || w > bestW || (w == bestW && m < best) {
			best, bestW = m, w
		}
	}
	return best
}

// Assign returns the owner of every partition 0..partitions-1 of job among
// members (Owner of PartitionKey(job, p)). It returns an empty map when
// partitions <= 0, and a map of "" owners when members is empty.
func Assign(job string, partitions int32, members []string) map[int32]string {
	out := make(map[int32]string, max(partitions, 0))
	for p := int32(0); p < partitions; p++ {
		out[p] = Owner(PartitionKey(job, p), members)
	}
	return out
}
