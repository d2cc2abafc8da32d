package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/internal/promreg"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/secret"
)

// jobRun is what `eddy dev` and `eddy run` share: open the sink, serve
// /metrics, run the job with live progress, print the summary.
type jobRun struct {
	cfg     actors.Config
	sinkURL string
	// extraSinks are more sink URLs; every row goes to each sink.
	extraSinks  []string
	sinkCfg     sinks.Config // zero value: every default
	devices     operators.DeviceLookup
	metricsAddr string // "" = no HTTP server
	// apiToken guards the savepoint API's writes (requireToken); "" =
	// they are refused.
	apiToken string
	// reg, when set, is the registry to register the job's metrics on (a
	// node serves it on its HTTP API); nil = a new one.
	reg      *prometheus.Registry
	progress io.Writer // live progress lines; nil = none
	out      io.Writer // summary
	log      *slog.Logger
	// input, when > 0, is the number of records produced into the source,
	// checked against the summary in bounded mode.
	input int64
	// push, when its URL is set, pushes the metrics to a Pushgateway when
	// the job ends (success or failure) and, with an interval, while it
	// runs. A failed push is logged and does not change the job's result.
	push pushConfig
}

func (r *jobRun) run(ctx context.Context) (actors.Summary, error) {
	sum, err := r.runJob(ctx)
	return sum, secret.RedactError(err) // a password never reaches the terminal
}

func (r *jobRun) runJob(ctx context.Context) (sum actors.Summary, err error) {
	reg := r.reg
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	// The job's and its sinks' metrics carry eddy_job="<name>", as on a
	// cluster node; they leave reg when the run ends.
	jreg := promreg.ForJob(reg, r.cfg.Name)
	defer jreg.UnregisterAll()
	if r.push.URL != "" {
		p, perr := newMetricsPusher(r.push, r.cfg.Name, reg, r.log)
		if perr != nil {
			return actors.Summary{}, perr
		}
		finish := startPush(ctx, p)
		// Runs after the sinks are closed (their last metrics are in)
		// and before the job's metrics leave reg; err is the result.
		defer func() { finish(err) }()
	}
	var all actors.MultiSink
	defer all.Close()
	for _, u := range append([]string{r.sinkURL}, r.extraSinks...) {
		if u == "" {
			continue
		}
		s, err := sinks.Open(u, r.sinkCfg, jreg)
		if err != nil {
			return actors.Summary{}, err
		}
		all = append(all, s)
		if err := s.Open(ctx); err != nil {
			return actors.Summary{}, secret.RedactError(fmt.Errorf("open sink %s: %w", secret.RedactURL(u), err))
		}
	}
	if len(all) == 0 {
		return actors.Summary{}, errors.New("no sink: set sink (or sinks) in the job spec")
	}
	var sink sinks.Sink = all
	if len(all) == 1 {
		sink = all[0]
	}
	job, err := actors.NewJob(r.cfg, sink, r.devices, jreg, r.log)
	if err != nil {
		return actors.Summary{}, err
	}
	if c := r.cfg.Checkpoint; c.Enabled() {
		fmt.Fprintf(r.out, "checkpoints: %s every %s (keep %d), state in %s\n", secret.RedactURL(c.Storage), c.Interval, c.Retain, r.cfg.StateDir())
	}
	// stopRun ends the run as a SIGTERM does (stop with savepoint).
	ctx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := make(chan struct{})
	defer close(stop)
	if r.metricsAddr != "" {
		srv, err := serveMetrics(r.metricsAddr, reg, r.apiToken, func(mux *http.ServeMux) { serveCheckpointAPI(mux, job, r.cfg, stopRun) })
		if err != nil {
			return actors.Summary{}, err
		}
		fmt.Fprintf(r.out, "metrics: http://%s/metrics\n", srv.Addr)
		if r.cfg.Checkpoint.Enabled() {
			fmt.Fprintf(r.out, "savepoints: eddy savepoint --addr %s\n", srv.Addr)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-stop
			_ = srv.Close()
		}()
	}
	if r.progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reportProgress(r.progress, job, stop)
		}()
	}
	sum, err = job.Run(ctx)
	if err != nil {
		return sum, err
	}
	if err := all.Close(); err != nil {
		return sum, fmt.Errorf("close sink: %w", err)
	}
	printSummary(r.out, sum, r.input)
	if r.cfg.Source.Bounded && r.input > 0 && sum.Received != r.input {
		return sum, fmt.Errorf("received %d records, but %d were produced", sum.Received, r.input)
	}
	return sum, nil
}

// defaultMetricsAddr is the default of --metrics-addr. When it is taken
// (another eddy runs), a free port is used instead, and printed; an address
// the user chose must be free.
const defaultMetricsAddr = "127.0.0.1:9464"

// serveMetrics serves /metrics and /healthz on addr, plus what each of
// more registers on the mux; every write needs token (requireToken).
func serveMetrics(addr string, reg *prometheus.Registry, token string, more ...func(*http.ServeMux)) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil && addr == defaultMetricsAddr {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	for _, fn := range more {
		fn(mux)
	}
	srv := &http.Server{Addr: ln.Addr().String(), Handler: requireToken(token, mux), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "metrics server:", err)
		}
	}()
	return srv, nil
}

// reportProgress prints one line a second: throughput, lag, watermark and
// emission counts over all partitions.
func reportProgress(w io.Writer, job *actors.Job, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	lastT := time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			var t actors.PartitionStatus
			var done int
			st := job.Status()
			for _, p := range st {
				t.Received += p.Received
				t.Lag += p.Lag
				t.WindowsFired += p.WindowsFired
				t.WorkPeriods += p.WorkPeriods
				t.DeadLetters += p.DeadLetters
				t.Late += p.Late
				if p.Done {
					done++
				}
			}
			rate := float64(t.Received-last) / now.Sub(lastT).Seconds()
			last, lastT = t.Received, now
			fmt.Fprintf(w, "records %d (%.0f/s)  lag %d  windows %d  work periods %d  late %d  dead letters %d  partitions done %d/%d\n",
				t.Received, rate, t.Lag, t.WindowsFired, t.WorkPeriods, t.Late, t.DeadLetters, done, len(st))
		}
	}
}

func printSummary(w io.Writer, s actors.Summary, input int64) {
	fmt.Fprintf(w, "\nsummary: %d partitions in %s (%.0f records/s)\n", s.Partitions, s.Duration.Round(time.Millisecond),
		float64(s.Processed)/s.Duration.Seconds())
	fmt.Fprintf(w, "  input          %d\n", s.Received)
	fmt.Fprintf(w, "  valid (on time) %d\n", s.Valid)
	fmt.Fprintf(w, "  late           %d\n", s.Late)
	fmt.Fprintf(w, "  dead letters   %d\n", s.DeadLetters)
	fmt.Fprintf(w, "  windows fired  %d\n", s.WindowsFired)
	fmt.Fprintf(w, "  work periods   %d\n", s.WorkPeriods)
	check := "ok"
	if s.Valid+s.Late+s.DeadLetters != s.Received {
		check = "MISMATCH"
	}
	fmt.Fprintf(w, "  valid + late + dead letters = %d (%s)\n", s.Valid+s.Late+s.DeadLetters, check)
	if input > 0 {
		fmt.Fprintf(w, "  records produced into the source: %d\n", input)
	}
	if s.Restored > 0 {
		fmt.Fprintf(w, "  partitions restored from a checkpoint: %d (counts include what they had processed before)\n", s.Restored)
	}
	if s.FinalCheckpoint > 0 {
		fmt.Fprintf(w, "  final checkpoint: %d\n", s.FinalCheckpoint)
	}
}
