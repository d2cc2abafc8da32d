package control

// GossipMembers is the membership of the test nodes (testNodeConfig): real
// memberlist gossip, cluster.MembersFunc(cluster.DefaultConfig()). Package
// control cannot import package cluster (cluster imports control), so the
// external test package sets it (gossip_ext_test.go), in its init, before
// any test runs.
var GossipMembers MembersFunc
