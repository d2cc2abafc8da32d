package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/eddy-iot/eddy/control"
)

// newNodeCmd is `eddy node`: the long-running process of a cluster member.
func newNodeCmd() *cobra.Command {
	cfg := control.DefaultConfig()
	var tokenFile, logLevel, jobFile string
	cmd := &cobra.Command{
		Use:   "node --id ID --data-dir DIR [--join HOST:PORT,...] [--bootstrap-expect 3]",
		Short: "Run a cluster member: Raft control plane (the JobManager), gossip, HTTP API",
		Long: `eddy node runs one member of an eddy cluster. The first --bootstrap-expect
nodes to meet through gossip form the Raft voter set (3 or 5); nodes started
later (without --bootstrap-expect, or after bootstrap) join as non-voters that
replicate the log, so every node reads broadcast configuration locally. A voter
that stays failed longer than --autopilot-dead-server-timeout is replaced by a
healthy non-voter. A node restarted with the same --data-dir recovers its state.

A 3-node cluster on one machine:

  eddy node --id n1 --data-dir /tmp/n1 --http-addr 127.0.0.1:8081 --raft-addr 127.0.0.1:8301 --gossip-addr 127.0.0.1:8401 --bootstrap-expect 3
  eddy node --id n2 --data-dir /tmp/n2 --http-addr 127.0.0.1:8082 --raft-addr 127.0.0.1:8302 --gossip-addr 127.0.0.1:8402 --bootstrap-expect 3 --join 127.0.0.1:8401
  eddy node --id n3 --data-dir /tmp/n3 --http-addr 127.0.0.1:8083 --raft-addr 127.0.0.1:8303 --gossip-addr 127.0.0.1:8403 --bootstrap-expect 3 --join 127.0.0.1:8401
  eddy ctl --addr http://127.0.0.1:8081 raft

SIGINT/SIGTERM stop the node gracefully (it keeps its Raft membership, so a
restart resumes its place); 'eddy ctl leave' removes it for good.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := parseLogLevel(logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			if tokenFile != "" {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--api-token-file: %w", err)
				}
				if cfg.APIToken = strings.TrimSpace(string(b)); cfg.APIToken == "" {
					return fmt.Errorf("--api-token-file %s is empty", tokenFile)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runNode(ctx, cfg, jobFile, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.ID, "id", "", "node id: unique and stable across restarts (required)")
	fl.StringVar(&cfg.DataDir, "data-dir", "", "directory for the Raft log and snapshots (required)")
	fl.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "HTTP API address (host:port, reachable by the other nodes)")
	fl.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:8300", "Raft TCP address (host:port)")
	fl.StringVar(&cfg.GossipAddr, "gossip-addr", "127.0.0.1:8301", "memberlist gossip address, TCP and UDP (host:port)")
	fl.StringSliceVar(&cfg.Join, "join", nil, "gossip addresses of existing members to join, comma-separated (retried until one answers)")
	fl.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "voters of a new cluster (1, 3 or 5): bootstrap once that many such nodes met; 0 = join as non-voter")
	fl.StringVar(&tokenFile, "api-token-file", "", "file holding a bearer token required for API writes (shared by all nodes)")
	fl.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.StringVar(&jobFile, "job", "", "YAML job spec to run on this node (every partition, until placement spreads them); enrichment reads devices/<pboxid> from the local Raft replica")
	fl.IntVar(&cfg.MaxValueBytes, "max-value-bytes", cfg.MaxValueBytes, "largest accepted value, in bytes (larger: HTTP 413)")
	fl.DurationVar(&cfg.ApplyTimeout, "apply-timeout", cfg.ApplyTimeout, "how long a write may wait to be committed")
	fl.DurationVar(&cfg.LeaderWait, "leader-wait", cfg.LeaderWait, "how long a request waits for a leader before HTTP 503")
	fl.DurationVar(&cfg.Raft.HeartbeatTimeout, "raft-heartbeat-timeout", cfg.Raft.HeartbeatTimeout, "follower starts an election after this long without the leader")
	fl.DurationVar(&cfg.Raft.ElectionTimeout, "raft-election-timeout", cfg.Raft.ElectionTimeout, "candidate restarts an election after this long")
	fl.DurationVar(&cfg.Raft.LeaderLeaseTimeout, "raft-leader-lease-timeout", cfg.Raft.LeaderLeaseTimeout, "leader steps down after this long without a quorum")
	fl.DurationVar(&cfg.Raft.CommitTimeout, "raft-commit-timeout", cfg.Raft.CommitTimeout, "leader sends commit index to followers at least this often")
	fl.Uint64Var(&cfg.Raft.SnapshotThreshold, "raft-snapshot-threshold", cfg.Raft.SnapshotThreshold, "snapshot after this many new log entries")
	fl.DurationVar(&cfg.Raft.SnapshotInterval, "raft-snapshot-interval", cfg.Raft.SnapshotInterval, "how often to check the snapshot threshold")
	fl.Uint64Var(&cfg.Raft.TrailingLogs, "raft-trailing-logs", cfg.Raft.TrailingLogs, "log entries kept after a snapshot")
	fl.StringVar(&cfg.Raft.LogLevel, "raft-log-level", cfg.Raft.LogLevel, "Raft library log level: trace, debug, info, warn, error, off")
	fl.DurationVar(&cfg.Autopilot.DeadServerTimeout, "autopilot-dead-server-timeout", cfg.Autopilot.DeadServerTimeout, "remove (and replace) a server failed for this long")
	fl.DurationVar(&cfg.Autopilot.StabilizationTime, "autopilot-stabilization-time", cfg.Autopilot.StabilizationTime, "a non-voter must be alive this long to be promoted")
	fl.DurationVar(&cfg.Gossip.ProbeInterval, "gossip-probe-interval", cfg.Gossip.ProbeInterval, "memberlist failure probe interval")
	fl.DurationVar(&cfg.Gossip.ProbeTimeout, "gossip-probe-timeout", cfg.Gossip.ProbeTimeout, "memberlist probe timeout")
	fl.IntVar(&cfg.Gossip.SuspicionMult, "gossip-suspicion-mult", cfg.Gossip.SuspicionMult, "memberlist suspicion multiplier")
	fl.StringSliceVar(&cfg.Bridge.Brokers, "broadcast-brokers", nil, "Kafka brokers of the broadcast topic; set to let the leader apply it to devices/<pboxid>")
	fl.StringVar(&cfg.Bridge.Topic, "broadcast-topic", "iot-broadcast", "broadcast topic (key pboxid, value device JSON, empty value deletes)")
	fl.StringVar(&cfg.Bridge.Group, "broadcast-group", "eddy-broadcast-bridge", "consumer group of the broadcast bridge")
	return cmd
}

// runNode starts the node and runs it until ctx ends (signal) or the node is
// asked to leave through the API.
//
// With jobFile, the node also runs that job; its enrichment reads the
// broadcast device data from the node's local Raft replica, so a change made
// through the API is used within the replication delay.
func runNode(ctx context.Context, cfg control.Config, jobFile string, out io.Writer) error {
	var job *jobRun
	if jobFile != "" {
		spec, jcfg, err := loadJobSpec(jobFile, false)
		if err != nil {
			return err
		}
		if spec.Broadcast.DevicesFile != "" {
			return fmt.Errorf("%s: broadcast.devices_file is not used by eddy node: device data comes from Raft (eddy ctl devices import FILE)", jobFile)
		}
		job = &jobRun{cfg: jcfg, sinkURL: spec.Sink, out: out, log: cfg.Logger}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer, cfg.Gatherer = reg, reg
	node, err := control.StartNode(cfg)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobDone := make(chan error, 1)
	if job != nil {
		job.devices, job.reg = node.Devices(), reg
		go func() {
			_, err := job.run(runCtx)
			jobDone <- err
		}()
	}
	var jobErr error
	select {
	case <-ctx.Done():
		cfg.Logger.Info("signal received, stopping")
	case <-node.Done():
		cfg.Logger.Info("left the cluster, stopping")
	case jobErr = <-jobDone:
		if jobErr != nil {
			cfg.Logger.Error("job failed, stopping", "err", jobErr)
		} else {
			cfg.Logger.Info("job finished, stopping")
		}
		job = nil
	}
	cancel()
	if job != nil {
		jobErr = <-jobDone
	}
	return errors.Join(jobErr, node.Close())
}

func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
