package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/internal/promreg"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// BridgeConfig configures the broadcast bridge (StartNode's WithBridge): a
// Kafka consumer, run by the Raft leader only, that applies a broadcast
// topic (the seed pipeline's iot-broadcast stream) to the devices/<pboxid>
// keys through the node's Apply.
//
// Message format: key = pboxid, value = the device JSON
// {"company","site","threshold"}; a message without key may carry
// "pboxid" in the value instead. An empty (tombstone) value deletes the
// device. Invalid messages are logged, counted and skipped. Offsets are
// committed (consumer group Group) after the write was applied, so a new
// leader resumes where the old one stopped; a message may be applied twice
// across a failover, which is harmless (same value, in order).
type BridgeConfig struct {
	// Brokers are Kafka bootstrap addresses; empty disables the bridge.
	Brokers []string
	// Topic to consume; default "iot-broadcast".
	Topic string
	// Group is the consumer group id; default "eddy-broadcast-bridge".
	Group string
	// KafkaVersion is the protocol version to speak; default 2.8.0.
	KafkaVersion string
	// Security is the TLS and SASL configuration of the connections;
	// default plaintext without authentication.
	Security kafkaconf.Security
}

func (b BridgeConfig) withDefaults() BridgeConfig {
	if b.Topic == "" {
		b.Topic = "iot-broadcast"
	}
	if b.Group == "" {
		b.Group = "eddy-broadcast-bridge"
	}
	if b.KafkaVersion == "" {
		b.KafkaVersion = kafkaconf.DefaultVersion
	}
	return b
}

// broadcastMsg is the accepted shape of a broadcast message value.
type broadcastMsg struct {
	PboxID    *string  `json:"pboxid,omitempty"`
	Company   string   `json:"company"`
	Site      string   `json:"site"`
	Threshold *float64 `json:"threshold,omitempty"`
}

// bridgeCommand turns one broadcast message into a command.
func bridgeCommand(key, value []byte) (control.Command, error) {
	id := string(key)
	if len(bytes.TrimSpace(value)) == 0 {
		if id == "" {
			return nil, errors.New("tombstone without a key")
		}
		return control.KVDelete{Key: control.DevicesPrefix + id}, nil
	}
	var m broadcastMsg
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("invalid device JSON: %v", err)
	}
	if id == "" && m.PboxID != nil {
		id = *m.PboxID
	}
	if id == "" {
		return nil, errors.New("no pboxid (message key or \"pboxid\" field)")
	}
	v, err := json.Marshal(operators.DeviceInfo{Company: m.Company, Site: m.Site, Threshold: m.Threshold})
	if err != nil {
		return nil, err
	}
	cmd := control.KVSet{Key: control.DevicesPrefix + id, Value: string(v)}
	return cmd, cmd.Validate()
}

// bridge runs the consumer while its node is the ready Raft leader: it is
// the node's control.LeaderService.
type bridge struct {
	n        *control.Node
	cfg      BridgeConfig
	reg      *promreg.Group // the bridge's metrics, on the node's Registerer
	messages *prometheus.CounterVec

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// validate checks cfg (defaults applied); errors wrap
// control.ErrInvalidConfig.
func (b BridgeConfig) validate() error {
	if _, err := sarama.ParseKafkaVersion(b.KafkaVersion); err != nil {
		return fmt.Errorf("%w: bridge Kafka version %q: %v", control.ErrInvalidConfig, b.KafkaVersion, err)
	}
	if err := b.Security.Validate(); err != nil {
		return fmt.Errorf("%w: bridge: %v", control.ErrInvalidConfig, err)
	}
	return nil
}

// startBridge registers the bridge's metrics where the node registers its
// own and hands the bridge to n (control.Node.RunWhileLeader), which starts
// and stops it with its leadership and closes it with itself. cfg has its
// defaults and is valid.
func startBridge(n *control.Node, cfg BridgeConfig) error {
	b := &bridge{n: n, cfg: cfg, reg: promreg.NewGroup(n.Registerer()), messages: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eddy_broadcast_bridge_messages_total",
		Help: "Broadcast topic messages handled by this node's bridge: applied, deleted, invalid.",
	}, []string{"result"})}
	if err := b.reg.Register(b.messages); err != nil {
		return fmt.Errorf("cluster: register bridge metrics: %w", err)
	}
	n.RunWhileLeader(b)
	return nil
}

// SetLeader starts or stops the consumer (control.LeaderService).
func (b *bridge) SetLeader(leader bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if leader && b.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		b.cancel, b.done = cancel, make(chan struct{})
		go b.run(ctx, b.done)
		return
	}
	if !leader && b.cancel != nil {
		b.cancel()
		<-b.done
		b.cancel, b.done = nil, nil
	}
}

// Close unregisters the bridge's metrics (control.LeaderService); the node
// has stopped the consumer before.
func (b *bridge) Close() { b.reg.UnregisterAll() }

func (b *bridge) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	log := b.n.Logger().With("component", "bridge", "topic", b.cfg.Topic)
	sc := kafkaconf.MustNew("eddy-bridge-"+b.n.ID(), b.cfg.KafkaVersion, b.cfg.Security) // validated by StartNode
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Interval = 200 * time.Millisecond
	// A failed consumer is made anew after 1 s doubling to 30 s (±20 %
	// jitter), from 1 s again once a consumer group was joined.
	retry := backoff.ExponentialBackOff{InitialInterval: time.Second, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 30 * time.Second}
	for ctx.Err() == nil {
		group, err := sarama.NewConsumerGroup(b.cfg.Brokers, b.cfg.Group, sc)
		if err == nil {
			retry.Reset()
			log.Info("bridge consuming")
			for ctx.Err() == nil {
				if err = group.Consume(ctx, []string{b.cfg.Topic}, b); err != nil {
					break
				}
			}
			group.Close()
		}
		if ctx.Err() != nil {
			return
		}
		delay := retry.NextBackOff()
		log.Warn("bridge consumer failed, retrying", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// Setup implements sarama.ConsumerGroupHandler.
func (b *bridge) Setup(sarama.ConsumerGroupSession) error { return nil }

// Cleanup implements sarama.ConsumerGroupHandler.
func (b *bridge) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim applies the messages of one partition in order.
func (b *bridge) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case <-sess.Context().Done():
			return nil
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			cmd, err := bridgeCommand(msg.Key, msg.Value)
			if err != nil {
				b.messages.WithLabelValues("invalid").Inc()
				b.n.Logger().Warn("bridge: skipping invalid broadcast message", "partition", msg.Partition, "offset", msg.Offset, "err", err)
				sess.MarkMessage(msg, "")
				continue
			}
			if _, err := b.n.Apply(sess.Context(), cmd); err != nil {
				if errors.Is(err, control.ErrInvalid) || errors.Is(err, control.ErrTooLarge) {
					b.messages.WithLabelValues("invalid").Inc()
					sess.MarkMessage(msg, "")
					continue
				}
				// Not applied (or unknown): stop; the next session or
				// leader re-reads from the last committed offset.
				return fmt.Errorf("bridge: apply offset %d: %w", msg.Offset, err)
			}
			if _, del := cmd.(control.KVDelete); del {
				b.messages.WithLabelValues("deleted").Inc()
			} else {
				b.messages.WithLabelValues("applied").Inc()
			}
			sess.MarkMessage(msg, "")
		}
	}
}
