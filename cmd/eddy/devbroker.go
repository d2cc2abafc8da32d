package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/eddy-iot/eddy/actors/devbroker"
)

func newDevBrokerCmd() *cobra.Command {
	cfg := devbroker.DefaultConfig()
	var verbose bool
	var saslPasswordFile string
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run an embedded Kafka-protocol broker until Ctrl-C",
		Long: `Run a single-node Kafka-protocol broker in this process (franz-go's kfake):
good enough for sarama and franz-go clients, kcat and eddy itself to create
topics, produce (plain, idempotent, transactional), fetch and use consumer
groups. It is a development broker: one node, no replication.

The topics given with --topic (default iot-topic) are created at start with
--partitions partitions; topics that clients ask for are created on demand
with the same count unless --no-auto-create is set.

With --data-dir, topics, records, committed offsets and producer state are
kept in that directory and reloaded at the next start; without it everything
is in memory. Stop with Ctrl-C (SIGINT) or SIGTERM: the state is saved and
the broker closes cleanly.

With --sasl-user, every client must authenticate with SASL (PLAIN,
SCRAM-SHA-256 or SCRAM-SHA-512) as that user, with the password of
--sasl-password-file or $KAFKA_PASSWORD — the variable a job spec's
source.sasl.password: "${KAFKA_PASSWORD}" reads. The password is never
printed.`,
		Example: `  eddy dev broker
  eddy dev broker --listen 127.0.0.1:9092 --partitions 12 --data-dir ./kafka-data
  eddy dev broker --listen 0.0.0.0:9092 --advertise myhost --topic iot-topic --topic iot-broadcast
  KAFKA_PASSWORD=s3cret eddy dev broker --sasl-user eddy

  # then, in another terminal:
  eddy replay --brokers 127.0.0.1:9092`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if verbose {
				cfg.LogWriter = cmd.ErrOrStderr()
				if cfg.LogLevel == "" {
					cfg.LogLevel = "info"
				}
			}
			if cfg.SASLUser != "" {
				cfg.SASLPassword = strings.TrimSpace(os.Getenv("KAFKA_PASSWORD"))
				if saslPasswordFile != "" {
					b, err := os.ReadFile(saslPasswordFile)
					if err != nil {
						return fmt.Errorf("--sasl-password-file: %w", err)
					}
					cfg.SASLPassword = strings.TrimSpace(string(b))
				}
				if cfg.SASLPassword == "" {
					return fmt.Errorf("--sasl-user %s needs a password: --sasl-password-file FILE or $KAFKA_PASSWORD", cfg.SASLUser)
				}
			} else if saslPasswordFile != "" {
				return fmt.Errorf("--sasl-password-file needs --sasl-user")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			b, err := devbroker.Start(cfg)
			if err != nil {
				return err
			}
			printBroker(cmd.OutOrStdout(), b, cfg)
			<-ctx.Done()
			fmt.Fprintln(cmd.OutOrStdout(), "eddy dev broker: stopping")
			b.Close()
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Listen, "listen", cfg.Listen, "host:port to listen on (port 0 = any free port)")
	fl.StringVar(&cfg.Advertise, "advertise", "", "host clients are told to connect to (default: the listen host, or 127.0.0.1 for 0.0.0.0)")
	fl.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of the --topic topics and of auto-created topics")
	fl.StringArrayVar(&cfg.Topics, "topic", cfg.Topics, "topic to create at start (repeatable)")
	fl.StringVar(&cfg.DataDir, "data-dir", "", "keep the broker's state in this directory across restarts (default: in memory)")
	fl.BoolVar(&cfg.DisableAutoCreateTopics, "no-auto-create", false, "do not create unknown topics on demand")
	fl.BoolVarP(&verbose, "verbose", "v", false, "log broker events to stderr")
	fl.StringVar(&cfg.LogLevel, "log-level", "", "broker log level with --verbose: error, warn, info or debug (default info)")
	fl.StringVar(&cfg.SASLUser, "sasl-user", "", "require SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) as this user; \"\" = no authentication")
	fl.StringVar(&saslPasswordFile, "sasl-password-file", "", "file holding the --sasl-user password (default $KAFKA_PASSWORD); never printed")
	return cmd
}

func printBroker(w io.Writer, b *devbroker.Broker, cfg devbroker.Config) {
	var topics []string
	for _, t := range cfg.Topics {
		topics = append(topics, fmt.Sprintf("%s (%d partitions)", t, b.Partitions(t)))
	}
	store := "in memory"
	if cfg.DataDir != "" {
		store = "data dir " + cfg.DataDir
	}
	fmt.Fprintf(w, "eddy dev broker: listening on %s\n", strings.Join(b.Addrs(), ","))
	fmt.Fprintf(w, "  topics: %s; %s\n", strings.Join(topics, ", "), store)
	fmt.Fprintf(w, "  clients: --brokers %s   (Ctrl-C to stop)\n", strings.Join(b.Addrs(), ","))
	if cfg.SASLUser != "" {
		fmt.Fprintf(w, "  SASL required: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 as user %s\n", cfg.SASLUser)
	}
}
