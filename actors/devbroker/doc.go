// Package devbroker runs an embedded Kafka-protocol broker for development,
// tests and demos: franz-go's kfake cluster with eddy's defaults.
//
// The broker speaks the Kafka wire protocol well enough for IBM/sarama (and
// franz-go) clients to create and list topics, produce (plain, idempotent and
// transactional), fetch, and use consumer groups and committed offsets. It is
// a single node: one listener, replication factor 1, all partitions led by
// that node. It is not a production Kafka: there is no replication, no
// quotas enforcement, and with an empty DataDir everything lives in memory
// and is lost on Close.
//
// Usage:
//
//	b, err := devbroker.Start(devbroker.Config{Listen: "127.0.0.1:0"})
//	if err != nil { ... }
//	defer b.Close()
//	brokers := b.Addrs() // e.g. ["127.0.0.1:41234"], give these to sarama
//
// Topics in Config.Topics are created at start with Config.Partitions
// partitions (default: "iot-topic" with 12). Topics that clients ask for in
// metadata requests are auto-created with the same partition count unless
// Config.DisableAutoCreateTopics is set.
//
// Persistence: with Config.DataDir set, kfake writes topics, record segments,
// committed offsets and producer state below that directory and reloads them
// on the next Start with the same DataDir. Writes go through the OS page
// cache and are synced on segment roll and on Close (Kafka's default
// log.flush behaviour), so a kill -9 can lose the latest batches; a clean
// Close loses nothing.
package devbroker
