package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"

	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/internal/promreg"
	"github.com/eddy-iot/eddy/sinks/secret"
)

// pushConfig says where eddy run pushes the job's metrics (a Prometheus
// Pushgateway, the way batch jobs hand their metrics to Prometheus). The
// zero value is off.
type pushConfig struct {
	// URL of the Pushgateway (http:// or https://, optional
	// user:password@ for basic auth, optional path prefix); "" = off.
	URL string
	// Job is the value of the Prometheus "job" grouping label; default
	// defaultPushJob ("eddy").
	Job string
	// Interval > 0 also pushes every Interval while the job runs; 0 = only
	// the final push when the job ends (default). Must be 0 or >= 1s.
	Interval time.Duration
	// Timeout bounds one push; default defaultPushTimeout (10s).
	Timeout time.Duration
}

const (
	defaultPushJob     = "eddy"
	defaultPushTimeout = 10 * time.Second
	// envPushgateway is read when --pushgateway is not given; it overrides
	// metrics.pushgateway of the spec.
	envPushgateway = "EDDY_PUSHGATEWAY"
)

// Validate checks the configuration of an enabled push (URL set).
func (c pushConfig) Validate() error {
	if c.URL == "" {
		return nil
	}
	if err := spec.CheckPushgatewayURL(c.URL); err != nil {
		return err
	}
	if c.Job == "" {
		return errors.New(`--pushgateway-job: must not be empty (default "eddy")`)
	}
	if c.Interval != 0 && c.Interval < time.Second {
		return fmt.Errorf("--pushgateway-interval %s: must be 0 (final push only) or at least 1s", c.Interval)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("pushgateway timeout %s: must be >= 0 (0 = default 10s)", c.Timeout)
	}
	return nil
}

// metricsPusher pushes the metrics of one eddy run to a Pushgateway under
// the grouping key job=<Job>, eddy_job=<job name>, instance=<hostname>.
// Each push is a PUT: it replaces the metrics the group had. The
// password of the URL's userinfo is sent as basic auth and never appears
// in what it logs or returns.
type metricsPusher struct {
	cfg     pushConfig
	shown   string // the URL without userinfo, for logs
	pusher  func() *push.Pusher
	log     *slog.Logger
	gather  prometheus.Gatherer
	succeed prometheus.Gauge
	ended   prometheus.Gauge
	final   *prometheus.Registry
}

// newMetricsPusher validates c and returns a pusher of g's metrics for
// the job named jobName. The final push adds eddy_job_succeeded and
// eddy_job_end_timestamp_seconds.
func newMetricsPusher(c pushConfig, jobName string, g prometheus.Gatherer, log *slog.Logger) (*metricsPusher, error) {
	if c.Timeout == 0 {
		c.Timeout = defaultPushTimeout
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, err // Validate parsed it already
	}
	user := u.User
	u.User = nil
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	// The job's series carry eddy_job already (promreg.ForJob); the
	// Pushgateway adds it back from the grouping key, and the push client
	// refuses series that carry a grouping label themselves.
	p := &metricsPusher{cfg: c, shown: u.String(), log: log, gather: withoutLabel(g, promreg.JobLabel), final: prometheus.NewRegistry()}
	p.succeed = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eddy_job_succeeded",
		Help: "1 when the eddy run job ended without error, 0 when it failed (pushed once, when the job ends).",
	})
	p.ended = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eddy_job_end_timestamp_seconds",
		Help: "When the eddy run job ended, Unix seconds (pushed once, when the job ends).",
	})
	p.final.MustRegister(p.succeed, p.ended)
	client := &http.Client{Timeout: c.Timeout}
	p.pusher = func() *push.Pusher {
		ps := push.New(p.shown, c.Job).Client(client).
			Grouping(promreg.JobLabel, jobName).Grouping("instance", host)
		if user != nil {
			pw, _ := user.Password()
			ps = ps.BasicAuth(user.Username(), pw)
		}
		return ps
	}
	return p, nil
}

// runPeriodic pushes every cfg.Interval until stop is closed or ctx is
// done; failures are logged as warnings (the next push retries). Off when
// the interval is 0.
func (p *metricsPusher) runPeriodic(ctx context.Context, stop <-chan struct{}) {
	if p.cfg.Interval <= 0 {
		return
	}
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := p.pusher().Gatherer(p.gather).PushContext(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("pushgateway: periodic push failed; the next one retries", "url", p.shown, "err", secret.RedactError(err))
			}
		}
	}
}

// pushFinal pushes the final metrics, with eddy_job_succeeded set from
// jobErr. It does not take the job's context: a job stopped by SIGTERM
// still pushes (bounded by cfg.Timeout). The error, if any, is logged
// here; the caller keeps the job's own result and exit code.
func (p *metricsPusher) pushFinal(jobErr error) error {
	if jobErr == nil {
		p.succeed.Set(1)
	}
	p.ended.Set(float64(time.Now().UnixNano()) / 1e9)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	defer cancel()
	err := p.pusher().Gatherer(prometheus.Gatherers{p.gather, p.final}).PushContext(ctx)
	if err != nil {
		err = secret.RedactError(fmt.Errorf("pushgateway %s: %w", p.shown, err))
		p.log.Error("pushgateway: final push failed; the job's metrics are NOT in the Pushgateway (the job's result and exit code are unaffected)", "err", err)
		return err
	}
	p.log.Info("pushgateway: pushed final metrics", "url", p.shown, "job", p.cfg.Job, "succeeded", jobErr == nil)
	return nil
}

// startPush starts the periodic pushes of p (if any) and returns the
// function that stops them and makes the final push with the job's error.
func startPush(ctx context.Context, p *metricsPusher) (finish func(jobErr error)) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.runPeriodic(ctx, stop)
	}()
	return func(jobErr error) {
		close(stop)
		wg.Wait()
		_ = p.pushFinal(jobErr)
	}
}

// withoutLabel is g with the label name removed from every series (g's
// Gather returns new metric families on every call, as a Registry does).
func withoutLabel(g prometheus.Gatherer, name string) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				kept := m.Label[:0]
				for _, l := range m.GetLabel() {
					if l.GetName() != name {
						kept = append(kept, l)
					}
				}
				m.Label = kept
			}
		}
		return mfs, err
	})
}
