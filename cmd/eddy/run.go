package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/operators"
)

func newRunCmd() *cobra.Command {
	var (
		jobFile     string
		bounded     bool
		metricsAddr string
		quiet       bool

		checkpointStorage, stateDir, fromSavepoint, logLevel, tokenFile, memProfile string

		pushURL, pushJob string
		pushInterval     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run --job FILE",
		Short: "Run a job from a YAML job spec against an external Kafka and sink",
		Long: `Run a job described by a YAML job spec (source, format, event time, windows,
work periods, broadcast data, sink) against an external Kafka and MySQL/MariaDB,
SQLite, stdout or discard. See deploy/jobs/iot-work.yaml for every field with its
default.

Without --bounded the job runs until SIGINT/SIGTERM, then drains and flushes.

Checkpoints (checkpoint.storage in the spec, or --checkpoint-storage) make
every reading count exactly once in every sink across crashes: every
checkpoint.interval (default 5s) each partition pre-commits its sinks and
snapshots its source offset and keyed state; a restarted eddy run restores the
newest complete checkpoint and goes on from there. Savepoints: eddy savepoint,
which needs the job's API token (--api-token-file or $EDDY_TOKEN here, the
same for eddy savepoint); without one, savepoint requests are refused.

--pushgateway URL (or $EDDY_PUSHGATEWAY, or metrics.pushgateway in the spec)
pushes the job's metrics to a Prometheus Pushgateway when the job ends, with
eddy_job_succeeded (1/0), under job=<--pushgateway-job>, eddy_job=<name>,
instance=<hostname>. A failed push is logged as an error; the exit code stays
the job's own (0 when the job succeeded).`,
		Example: `  eddy run --job deploy/jobs/iot-work.yaml
  eddy run --job deploy/jobs/iot-work.yaml --bounded
  eddy run --job deploy/jobs/iot-work.yaml --checkpoint-storage file:///var/lib/eddy/checkpoints
  eddy run --job deploy/jobs/iot-work.yaml --from-savepoint 42
  eddy run --job deploy/jobs/iot-work.yaml --bounded --pushgateway http://127.0.0.1:9091`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			js, cfg, err := loadJobSpec(jobFile, bounded, spec.Run)
			if err != nil {
				return err
			}
			if checkpointStorage != "" {
				cfg.Checkpoint.Storage = checkpointStorage
			}
			if stateDir != "" {
				cfg.State.Dir = stateDir
			}
			cfg.Checkpoint.FromSavepoint = fromSavepoint
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("%s: %w", jobFile, err)
			}
			level, err := parseLogLevel(logLevel)
			if err != nil {
				return err
			}
			if !cfg.Checkpoint.Enabled() {
				fmt.Fprintln(cmd.ErrOrStderr(), "eddy run: no checkpoint storage (checkpoint.storage in the job spec, or --checkpoint-storage): a restarted job reprocesses from source.start_offset and forgets open windows")
			}
			var devices operators.DeviceLookup
			if f := js.Broadcast.DevicesFile; f != "" {
				if devices, err = loadDevicesFile(f); err != nil {
					return err
				}
			}
			token, err := readToken("--api-token-file", tokenFile)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			urls := js.SinkURLs()
			r := &jobRun{
				cfg:         cfg,
				sinkURL:     urls[0],
				extraSinks:  urls[1:],
				sinkCfg:     js.SinkConfig(),
				devices:     devices,
				metricsAddr: metricsAddr,
				apiToken:    token,
				out:         cmd.OutOrStdout(),
				log:         slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})),
			}
			r.push = pushConfig{URL: js.Metrics.Pushgateway, Job: pushJob, Interval: pushInterval}
			if v := os.Getenv(envPushgateway); v != "" {
				r.push.URL = v
			}
			if cmd.Flags().Changed("pushgateway") {
				r.push.URL = pushURL
			}
			if err := r.push.Validate(); err != nil {
				return err
			}
			if !quiet {
				r.progress = cmd.ErrOrStderr()
			}
			if memProfile != "" {
				stopProfile := memProfileAtPeak(ctx, memProfile)
				defer func() {
					if perr := stopProfile(); err == nil {
						err = perr
					}
				}()
			}
			_, err = r.run(ctx)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&jobFile, "job", "", "YAML job spec (required)")
	f.BoolVar(&bounded, "bounded", false, "read to the end offsets seen at start, fire every window and work period, print a summary and exit")
	f.StringVar(&metricsAddr, "metrics-addr", defaultMetricsAddr, `serve /metrics on this address ("" = off; the default falls back to a free port when taken)`)
	f.BoolVar(&quiet, "quiet", false, "no live progress lines on stderr")
	f.StringVar(&checkpointStorage, "checkpoint-storage", "", "checkpoint storage URL (file:///dir, s3://bucket/prefix); overrides checkpoint.storage of the spec")
	f.StringVar(&stateDir, "state-dir", "", "local directory of the pebble state store; overrides state.dir of the spec")
	f.StringVar(&fromSavepoint, "from-savepoint", "", "start from this savepoint (id or sp-… name, see eddy savepoint list) instead of the newest checkpoint")
	f.StringVar(&logLevel, "log-level", "info", "log level on stderr: debug, info, warn or error")
	f.StringVar(&pushURL, "pushgateway", "", `push the job's metrics to this Prometheus Pushgateway (http[s]://[user:password@]host:port) when the job ends, success or failure; overrides $`+envPushgateway+` and metrics.pushgateway of the spec ("" = off)`)
	f.StringVar(&pushJob, "pushgateway-job", defaultPushJob, `value of the "job" grouping label of the push (the other labels: eddy_job=<job name>, instance=<hostname>)`)
	f.DurationVar(&pushInterval, "pushgateway-interval", 0, "also push every interval while the job runs (0 = only the final push; else >= 1s)")
	f.StringVar(&tokenFile, "api-token-file", "", "file holding the bearer token that savepoint requests (POST/DELETE /v1/savepoints on --metrics-addr) need; default $EDDY_TOKEN or $EDDY_API_TOKEN; none = those requests get 401; never logged")
	f.StringVar(&memProfile, "memprofile", "", "write a heap profile to this file near the peak of the heap (rewritten whenever the heap grew 5 %; go tool pprof -sample_index=inuse_space FILE)")
	_ = cmd.MarkFlagRequired("job")
	return cmd
}

// loadJobSpec reads a YAML job spec and its validated configuration
// (spec.Load: ${NAME} expanded from the environment) for mode (spec.Run
// or spec.Cluster); bounded forces source.bounded.
func loadJobSpec(path string, bounded bool, mode spec.Mode) (*spec.Spec, actors.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, actors.Config{}, err
	}
	js, cfg, err := spec.Load(data, spec.Options{Bounded: bounded, Mode: mode})
	if err != nil {
		return nil, cfg, fmt.Errorf("%s:\n%w", path, err)
	}
	return js, cfg, nil
}

func loadDevicesFile(path string) (operators.DeviceMap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("devices file: %w", err)
	}
	m, err := operators.LoadDevices(data)
	if err != nil {
		return nil, fmt.Errorf("devices file %s: %w", path, err)
	}
	return m, nil
}
