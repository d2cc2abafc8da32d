//go:build race

package virtual

// raceEnabled: several protoactor-go clusters in one process race on
// protoactor's globals (grpclog.SetLoggerV2 in remote.Start, the shared
// math/rand source of cluster/informer.go), and protoactor's
// MemberList.UpdateClusterTopology reads its block list without a lock while
// its gossip actor writes it (every provider calls it from its own
// goroutine). The race detector reports those, inside protoactor-go, so the
// multi-node test does not run under -race.
const raceEnabled = true
