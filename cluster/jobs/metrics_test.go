package jobs

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// produceReadings writes n seed-schema records, one device per record
// key, into topic iot-topic of the broker at addrs.
func produceReadings(t *testing.T, addrs []string, n int) {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	p, err := sarama.NewSyncProducer(addrs, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	base := time.Now().Add(-time.Hour).UTC()
	msgs := make([]*sarama.ProducerMessage, 0, n)
	for i := range n {
		dev := fmt.Sprintf("dev-%d", i%7)
		ev := base.Add(time.Duration(i) * time.Second).Format("2006-01-02 15:04:05")
		msgs = append(msgs, &sarama.ProducerMessage{Topic: "iot-topic", Key: sarama.StringEncoder(dev),
			Value: sarama.StringEncoder(fmt.Sprintf(`{"event_time":%q,"metric":%d.5,"pboxid":%q,"latitude":57.1,"longitude":-2.1}`, ev, i%100, dev))})
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
}

// scrape fetches /metrics of handler and parses the text exposition.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// seriesValue returns the value of the series of family name with labels
// including want: a counter's or gauge's value, a histogram's count. ok is
// false when there is no such series.
func seriesValue(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, ok bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, w := range want {
			if have[k] != w {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		}
		ok = true
	}
	return v, ok
}

// TestJobsMetricsOnOneNode: three jobs run on one node; /metrics shows
// each one's job and sink metrics apart, by eddy_job: records received,
// rows written, a record latency observed once per record (at the SQL
// sink's flush; for the Kafka transactional sink at the checkpoint's
// commit), an event-time lag per partition of the unbounded job. A deleted job's series leave
// /metrics, and the job submitted again registers anew.
func TestJobsMetricsOnOneNode(t *testing.T) {
	const records = 300
	c := startCluster1(t, 2)
	produceReadings(t, c.broker.Addrs(), records)
	dir := t.TempDir()
	spec := func(job string, bounded bool) string {
		return fmt.Sprintf("name: %s\nsource:\n  brokers: [%q]\n  topic: iot-topic\n  bounded: %v\nsink: %q\ncheckpoint:\n  storage: \"file://%s\"\n  interval: 200ms\n",
			job, c.broker.Addrs()[0], bounded, "sqlite:"+filepath.Join(dir, job+".db"), dir)
	}
	c.submit(t, "bounded-job", spec("bounded-job", true))
	c.submit(t, "stream-job", spec("stream-job", false))
	c.submit(t, "txn-job", c.spec("txn-job", "kafka://"+c.broker.Addrs()[0]+"?create_topics=true&partitions=2&replication=1", dir, "200ms", ""))
	handler := promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.Handle("/metrics", handler)

	var mfs map[string]*dto.MetricFamily
	harness.Eventually(t, 30*time.Second, func() error {
		mfs = scrape(t, mux)
		for _, job := range []string{"bounded-job", "stream-job", "txn-job"} {
			j := map[string]string{"eddy_job": job}
			if v, _ := seriesValue(mfs, "eddy_records_received_total", j); v != records {
				return fmt.Errorf("%s: eddy_records_received_total %v, want %d", job, v, records)
			}
			if v, _ := seriesValue(mfs, "eddy_record_latency_seconds", j); v != records {
				return fmt.Errorf("%s: eddy_record_latency_seconds count %v, want %d", job, v, records)
			}
			if job == "txn-job" {
				continue
			}
			if v, _ := seriesValue(mfs, "eddy_sink_rows_written_total", map[string]string{"eddy_job": job, "sink": "sqlite", "table": "readings"}); v != records {
				return fmt.Errorf("%s: eddy_sink_rows_written_total{table=readings} %v, want %d", job, v, records)
			}
		}
		for _, p := range []string{"0", "1"} {
			if _, ok := seriesValue(mfs, "eddy_event_time_lag_seconds", map[string]string{"eddy_job": "stream-job", "partition": p}); !ok {
				return fmt.Errorf("no eddy_event_time_lag_seconds{eddy_job=stream-job,partition=%s}", p)
			}
		}
		return nil
	})
	for _, p := range []string{"0", "1"} {
		lag, _ := seriesValue(mfs, "eddy_event_time_lag_seconds", map[string]string{"eddy_job": "stream-job", "partition": p})
		// The records' event times are from an hour ago to 55 min ago.
		if lag < 3000 || lag > 3700 {
			t.Errorf("partition %s: event-time lag %.0f s, want about 3300-3600 s", p, lag)
		}
	}
	if _, ok := seriesValue(mfs, "eddy_event_time_lag_seconds", map[string]string{"eddy_job": "bounded-job"}); ok {
		t.Error("a bounded job at its end reports an event-time lag")
	}
	mean := func(job string) float64 {
		for _, m := range mfs["eddy_record_latency_seconds"].Metric {
			for _, lp := range m.Label {
				if lp.GetName() == "eddy_job" && lp.GetValue() == job {
					return m.Histogram.GetSampleSum() / float64(m.Histogram.GetSampleCount())
				}
			}
		}
		return -1
	}
	for _, job := range []string{"bounded-job", "stream-job", "txn-job"} {
		if m := mean(job); m < 0 || m > 30 {
			t.Errorf("%s: mean record latency %.3f s, want within [0, 30]", job, m)
		}
		t.Logf("%s: mean record latency %.0f ms", job, 1000*mean(job))
	}
	// Node-wide metrics carry no job label.
	for _, m := range mfs["eddy_partition_restarts_total"].GetMetric() {
		for _, lp := range m.Label {
			if lp.GetName() == "eddy_job" {
				t.Errorf("node-wide eddy_partition_restarts_total has eddy_job=%s", lp.GetValue())
			}
		}
	}

	// Delete the stream job: its runtime closes and its series go.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.node.Apply(ctx, control.JobDelete{Name: "stream-job"}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 20*time.Second, func() error {
		mfs := scrape(t, mux)
		if _, ok := seriesValue(mfs, "eddy_records_received_total", map[string]string{"eddy_job": "stream-job"}); ok {
			return fmt.Errorf("the deleted job's eddy_records_received_total is still on /metrics")
		}
		if _, ok := seriesValue(mfs, "eddy_records_received_total", map[string]string{"eddy_job": "bounded-job"}); !ok {
			return fmt.Errorf("the other job's metrics went too")
		}
		return nil
	})
	// Submitted again (a new state directory: the old one is the deleted
	// job's), it registers its metrics anew and processes every record.
	c.submit(t, "stream-job", strings.Replace(spec("stream-job", false), "stream-job.db", "stream-job-2.db", 1))
	harness.Eventually(t, 30*time.Second, func() error {
		mfs := scrape(t, mux)
		if v, _ := seriesValue(mfs, "eddy_records_received_total", map[string]string{"eddy_job": "stream-job"}); v != records {
			return fmt.Errorf("resubmitted stream-job: eddy_records_received_total %v, want %d", v, records)
		}
		return nil
	})
}
