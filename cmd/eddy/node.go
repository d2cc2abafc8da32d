package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/cluster"
	"github.com/eddy-iot/eddy/cluster/assign"
	"github.com/eddy-iot/eddy/cluster/jobs"
	"github.com/eddy-iot/eddy/cluster/virtual"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// newNodeCmd is `eddy node`: the long-running process of a cluster member.
func newNodeCmd() *cobra.Command {
	cfg := control.DefaultConfig()
	gossip := cluster.DefaultConfig()
	var bridge cluster.BridgeConfig
	var tokenFile, gossipKeyFile, logLevel, jobFile, bridgePasswordFile string
	drainTimeout := time.Minute
	leaveOnTerminate := true
	acfg := assign.DefaultConfig()
	var actorAddr string
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

  eddy node --id n1 --data-dir /tmp/n1 --http-addr 127.0.0.1:8081 --raft-addr 127.0.0.1:8301 --gossip-addr 127.0.0.1:8401 --actor-addr 127.0.0.1:8501 --bootstrap-expect 3
  eddy node --id n2 --data-dir /tmp/n2 --http-addr 127.0.0.1:8082 --raft-addr 127.0.0.1:8302 --gossip-addr 127.0.0.1:8402 --actor-addr 127.0.0.1:8502 --bootstrap-expect 3 --join 127.0.0.1:8401
  eddy node --id n3 --data-dir /tmp/n3 --http-addr 127.0.0.1:8083 --raft-addr 127.0.0.1:8303 --gossip-addr 127.0.0.1:8403 --actor-addr 127.0.0.1:8503 --bootstrap-expect 3 --join 127.0.0.1:8401
  eddy ctl --addr http://127.0.0.1:8081 raft

Jobs: 'eddy ctl job submit FILE' stores a job spec in Raft; every node runs
the device partitions that placement (rendezvous hashing over the live
members) gives it, under a Raft lease. 'eddy ctl partitions' shows owner,
epoch, offset, lag and watermark. A node that joins takes over about 1/n of
the partitions by live handoff; the partitions of a killed node are taken
over about a second later and restored from their last checkpoint.

SIGINT/SIGTERM stop the node gracefully: its partitions are handed over to
their next owners first (--drain-timeout), then, with --leave-on-terminate
(the default), it leaves the Raft configuration like 'eddy ctl leave': a
leader hands leadership over first, a voter is replaced by a healthy
non-voter (autopilot), and a voter stays when the voters left that Raft
reaches would be a minority of the new configuration. A node restarted with its
data dir joins again as a non-voter. --leave-on-terminate=false keeps the
Raft membership, so a restart resumes its place (the leader keeps
heartbeating the stopped node until it is back or autopilot removes it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := parseLogLevel(logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			if cfg.APIToken, err = readToken("--api-token-file", tokenFile); err != nil {
				return err
			}
			if cfg.APIToken == "" && !cfg.TLS.On() {
				cfg.Logger.Warn("no API token (--api-token-file, $EDDY_TOKEN): every HTTP API write (job submit/cancel, config, cluster changes) is refused with 401 until the nodes are restarted with one")
			}
			if err := bridgeSASLPassword(&bridge.Security.SASL, bridgePasswordFile); err != nil {
				return err
			}
			if gossip.SecretKey, err = readGossipKey(gossipKeyFile); err != nil {
				return err
			}
			if actorAddr, err = resolveActorAddr(actorAddr, cfg); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runNode(ctx, cfg, gossip, bridge, acfg, jobFile, drainTimeout, leaveOnTerminate, actorAddr, cmd.OutOrStdout())
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
	fl.StringVar(&tokenFile, "api-token-file", "", "file holding the bearer token every API write needs (the same on all nodes; e.g. openssl rand -hex 32 > FILE); default $EDDY_TOKEN or $EDDY_API_TOKEN (eddy ctl reads them too); none: writes are refused (401) unless the client presents a certificate of --tls-ca; never logged")
	fl.StringVar(&cfg.TLS.CertFile, "tls-cert", "", "PEM certificate of this node (SANs: its HTTP and Raft hosts; server and client use); with --tls-key and --tls-ca the API is HTTPS and Raft runs over mutual TLS (eddy dev certs makes a test set)")
	fl.StringVar(&cfg.TLS.KeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fl.StringVar(&cfg.TLS.CAFile, "tls-ca", "", "PEM CA that signs every node's certificate; Raft peers must present one")
	fl.StringVar(&gossipKeyFile, "gossip-key-file", "", "file holding the base64 gossip encryption key (16, 24 or 32 bytes, e.g. openssl rand -base64 32), the same on every node; default $EDDY_GOSSIP_KEY; none = plaintext gossip")
	fl.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.StringVar(&jobFile, "job", "", "YAML job spec to submit at start unless a job of its name is stored (like eddy ctl job submit)")
	fl.DurationVar(&acfg.LeaseTTL, "lease-ttl", acfg.LeaseTTL, "time bound of this node's partition leases, renewed through Raft every TTL/4: a node that cannot renew stops writing TTL − safety after its last renewal, others take over after TTL + safety without a renewal (so about the recovery time after a crash)")
	fl.DurationVar(&acfg.LeaseSafety, "lease-safety", acfg.LeaseSafety, "margin on both sides of a lease's expiry (clock-rate differences, stop latency); < lease-ttl/2")
	fl.DurationVar(&drainTimeout, "drain-timeout", drainTimeout, "on SIGTERM, how long to hand partitions over before stopping anyway")
	fl.BoolVar(&leaveOnTerminate, "leave-on-terminate", leaveOnTerminate, "on SIGTERM, after the handover, leave the Raft configuration (false: keep the membership for a restart)")
	fl.StringVar(&actorAddr, "actor-addr", "auto", `protoactor-go address (host:port, reachable by the other nodes) of this node's virtual actors: each device partition is addressable by identity "<job>/<partition>" from any node, GET /v1/partitions/{job}/{partition}; "auto" = the --gossip-addr host, gossip port + 1 (127.0.0.1:8302 with the defaults); "off" = none`)
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
	fl.DurationVar(&gossip.ProbeInterval, "gossip-probe-interval", gossip.ProbeInterval, "memberlist failure probe interval")
	fl.DurationVar(&gossip.ProbeTimeout, "gossip-probe-timeout", gossip.ProbeTimeout, "memberlist probe timeout")
	fl.IntVar(&gossip.SuspicionMult, "gossip-suspicion-mult", gossip.SuspicionMult, "memberlist suspicion multiplier")
	fl.StringSliceVar(&bridge.Brokers, "broadcast-brokers", nil, "Kafka brokers of the broadcast topic; set to let the leader apply it to devices/<pboxid>")
	fl.StringVar(&bridge.Topic, "broadcast-topic", "iot-broadcast", "broadcast topic (key pboxid, value device JSON, empty value deletes)")
	fl.StringVar(&bridge.Group, "broadcast-group", "eddy-broadcast-bridge", "consumer group of the broadcast bridge")
	fl.StringVar(&bridge.KafkaVersion, "broadcast-kafka-version", "", "Kafka protocol version of the bridge (default the source's, kafkaconf.DefaultVersion)")
	bs := &bridge.Security
	fl.BoolVar(&bs.TLS.Enable, "broadcast-tls", false, "TLS to the broadcast brokers (implied by the other --broadcast-tls-* flags)")
	fl.StringVar(&bs.TLS.CAFile, "broadcast-tls-ca", "", "PEM CA of the broadcast brokers' certificates (default the system roots)")
	fl.StringVar(&bs.TLS.CertFile, "broadcast-tls-cert", "", "PEM client certificate for broadcast brokers that require mutual TLS (with --broadcast-tls-key)")
	fl.StringVar(&bs.TLS.KeyFile, "broadcast-tls-key", "", "PEM key of --broadcast-tls-cert")
	fl.StringVar(&bs.TLS.ServerName, "broadcast-tls-server-name", "", "name checked in the broker certificate (default the broker host)")
	fl.StringVar(&bs.SASL.Mechanism, "broadcast-sasl-mechanism", "", `SASL of the bridge: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 ("" = none), as in a job spec's source.sasl`)
	fl.StringVar(&bs.SASL.User, "broadcast-sasl-user", "", "SASL user of the bridge")
	fl.StringVar(&bridgePasswordFile, "broadcast-sasl-password-file", "", "file holding the bridge's SASL password (default $KAFKA_PASSWORD); never logged")
	return cmd
}

// runNode starts the node and runs it until ctx ends (signal) or the node is
// asked to leave through the API. Every node runs the jobs stored in Raft
// (eddy ctl job submit): the partitions placement gives it (package jobs).
//
// With jobFile, the node first submits that job (if no job of that name
// is stored yet), as eddy ctl job submit would; its enrichment reads the
// broadcast device data from the local Raft replica.
func runNode(ctx context.Context, cfg control.Config, gossip cluster.Config, bridge cluster.BridgeConfig, acfg assign.Config, jobFile string, drainTimeout time.Duration, leaveOnTerminate bool, actorAddr string, out io.Writer) error {
	var submit *control.JobPut
	if jobFile != "" {
		_, jcfg, err := loadJobSpec(jobFile, false, spec.Cluster)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(jobFile)
		if err != nil {
			return err
		}
		submit = &control.JobPut{Name: jcfg.Name, Spec: string(data)}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer, cfg.Gatherer = reg, reg
	cfg.ValidateJob = jobs.ValidateSpec
	cfg.CheckSavepoint = jobs.CheckSavepoint
	node, err := cluster.StartNode(cfg, gossip, cluster.WithBridge(bridge))
	if err != nil {
		return err
	}
	svc, err := jobs.Start(node, jobs.Config{
		StateDir:   filepath.Join(cfg.DataDir, "state"),
		Devices:    node.Devices(),
		Logger:     cfg.Logger,
		Registerer: reg,
		Assigner:   acfg,
	})
	if err != nil {
		return errors.Join(err, node.Close())
	}
	var vn *virtual.Node
	if actorAddr != "" {
		if vn, err = startVirtualActors(node, svc, cfg, actorAddr); err != nil {
			return errors.Join(err, svc.Close(), node.Close())
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	if submit != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			submitAtStart(runCtx, node, *submit, cfg.Logger)
		}()
	}
	scheme := "http"
	if cfg.TLS.On() {
		scheme = "https"
	}
	fmt.Fprintf(out, "node %s: API %s://%s\n", cfg.ID, scheme, cfg.HTTPAddr)
	select {
	case <-ctx.Done():
		cfg.Logger.Info("signal received, handing partitions over and stopping", "leave", leaveOnTerminate)
		dctx, dcancel := context.WithTimeout(context.Background(), drainTimeout)
		err = svc.Assigner().Shutdown(dctx)
		dcancel()
		if err != nil {
			cfg.Logger.Warn("draining the partitions", "err", err)
		}
		if leaveOnTerminate {
			lctx, lcancel := context.WithTimeout(context.Background(), 2*cfg.LeaderWait+cfg.ApplyTimeout)
			if err := node.Leave(lctx); err != nil {
				cfg.Logger.Warn("leaving the raft configuration; the node stays a member", "err", err)
			}
			lcancel()
		}
	case <-node.Done():
		cfg.Logger.Info("left the cluster, stopping")
	}
	cancel()
	if vn != nil {
		node.SetPartitionLookup(nil)
		vn.Stop()
	}
	return errors.Join(svc.Close(), node.Close())
}

// submitAtStart stores job once the cluster has a leader, unless a job of
// that name is stored already.
func submitAtStart(ctx context.Context, node *control.Node, job control.JobPut, log *slog.Logger) {
	for {
		if _, ok := node.FSM().View().Job(job.Name); ok {
			return
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := node.Apply(actx, job)
		cancel()
		if err == nil {
			log.Info("job submitted", "job", job.Name)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// resolveActorAddr turns the --actor-addr value into the address to listen
// on ("" = virtual actors off): "off" (or "") is off, "auto" is the host of
// cfg.GossipAddr with the gossip port + 1, anything else must be host:port
// with a port in 1..65535. The address must differ from the HTTP, Raft and
// gossip addresses.
func resolveActorAddr(flag string, cfg control.Config) (string, error) {
	switch flag {
	case "off", "":
		return "", nil
	case "auto":
		host, p, err := net.SplitHostPort(cfg.GossipAddr)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil || port <= 0 || port >= 65535 {
			return "", fmt.Errorf("--actor-addr auto: cannot derive it from --gossip-addr %q (want host:port with a port below 65535); set --actor-addr host:port or off", cfg.GossipAddr)
		}
		flag = net.JoinHostPort(host, strconv.Itoa(port+1))
	default:
		_, p, err := net.SplitHostPort(flag)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil || port <= 0 || port > 65535 {
			return "", fmt.Errorf("--actor-addr %q: want host:port with a port in 1..65535, auto or off", flag)
		}
	}
	for name, a := range map[string]string{"--http-addr": cfg.HTTPAddr, "--raft-addr": cfg.RaftAddr, "--gossip-addr": cfg.GossipAddr} {
		if a == flag {
			return "", fmt.Errorf("--actor-addr %s is also %s; give each its own port (or --actor-addr off)", flag, name)
		}
	}
	return flag, nil
}

// startVirtualActors makes every device partition a protoactor-go virtual
// actor addressable by identity from any node (package cluster/virtual):
// activation follows the Raft lease, and a grain on a node without the lease
// answers "not owner". It serves GET /v1/partitions/{job}/{partition}.
func startVirtualActors(node *control.Node, svc *jobs.Service, cfg control.Config, addr string) (*virtual.Node, error) {
	if err := node.Membership().UpdateMeta(func(m *control.Meta) { m.ActorAddr = addr }, time.Second); err != nil {
		return nil, fmt.Errorf("--actor-addr: advertise: %w", err)
	}
	vn, err := virtual.Start(virtual.Config{
		NodeID:     cfg.ID,
		ActorAddr:  addr,
		Membership: node.Membership(),
		Leases:     virtual.ViewLeases{View: node.FSM().View},
		Local:      virtual.AssignerLocal{Partitions: svc.Assigner().Partitions},
		Logger:     cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("--actor-addr %s: %w", addr, err)
	}
	node.SetPartitionLookup(func(ctx context.Context, job string, p int32) (any, error) {
		return vn.PartitionStatus(ctx, job, int(p))
	})
	return vn, nil
}

// bridgeSASLPassword sets the broadcast bridge's SASL password from file,
// else $KAFKA_PASSWORD, when a SASL mechanism is set. Errors never hold the
// password.
func bridgeSASLPassword(s *kafkaconf.SASL, file string) error {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--broadcast-sasl-password-file: %w", err)
		}
		if s.Password = strings.TrimSpace(string(b)); s.Password == "" {
			return fmt.Errorf("--broadcast-sasl-password-file %s is empty", file)
		}
	} else if s.Mechanism != "" {
		s.Password = os.Getenv("KAFKA_PASSWORD")
	}
	if err := (kafkaconf.Security{SASL: *s}).Validate(); err != nil {
		return fmt.Errorf("broadcast bridge (--broadcast-sasl-*; password from --broadcast-sasl-password-file or $KAFKA_PASSWORD): %w", err)
	}
	return nil
}

// readGossipKey returns the gossip encryption key: the base64 text of file,
// else of $EDDY_GOSSIP_KEY, else none. Errors never hold the key.
func readGossipKey(file string) ([]byte, error) {
	text, from := os.Getenv("EDDY_GOSSIP_KEY"), "EDDY_GOSSIP_KEY"
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--gossip-key-file: %w", err)
		}
		text, from = string(b), "--gossip-key-file "+file
	}
	text = strings.TrimSpace(text)
	if text == "" {
		if file != "" {
			return nil, fmt.Errorf("%s is empty", from)
		}
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("%s: not base64 (make a key with: openssl rand -base64 32)", from)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("%s: key is %d bytes; want 16, 24 or 32 (openssl rand -base64 32)", from, n)
	}
	return key, nil
}
