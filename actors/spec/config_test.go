package spec

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors"
)

func TestSpecCheckpointFields(t *testing.T) {
	spec, err := Parse([]byte(`
source: {brokers: ["127.0.0.1:9092"]}
sink: discard
sinks: ["stdout"]
checkpoint: {storage: "file:///tmp/x", interval: 250ms, timeout: 1m, retain: 5}
state: {dir: /tmp/s, cache_devices: 100}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := spec.Config(Run)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Checkpoint.Storage != "file:///tmp/x" || cfg.Checkpoint.Interval != 250*time.Millisecond ||
		cfg.Checkpoint.Timeout != time.Minute || cfg.Checkpoint.Retain != 5 || cfg.State.Dir != "/tmp/s" || cfg.State.CacheDevices != 100 {
		t.Fatalf("config %+v %+v", cfg.Checkpoint, cfg.State)
	}
	if got := spec.SinkURLs(); !slices.Equal(got, []string{"discard", "stdout"}) {
		t.Fatalf("sink URLs %v", got)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"source: {brokers: [x]}\nsink: discard\ncheckpoint: {storage: mem://, retain: -1}\n", "retain"},
		{"source: {brokers: [x]}\nsink: discard\ncheckpoint: {storage: mem://, interval: 0s}\n", "interval"},
		{"source: {brokers: [x]}\nsinks: [\"\"]\n", "sinks[0]"},
		{"source: {brokers: [x]}\nsink: discard\ncheckpoint: {storge: x}\n", "storge"},
	} {
		s, err := Parse([]byte(tc.yaml))
		if err == nil {
			_, err = s.Config(Run)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error about %s", tc.yaml, err, tc.want)
		}
	}
}

// TestSpecSinkFlushInterval: sink_options.flush_interval sets
// Config.SinkFlushInterval; values outside [1ms, 1h] are refused naming
// the field.
func TestSpecSinkFlushInterval(t *testing.T) {
	base := "source: {brokers: [\"k:9092\"]}\nsink: discard\n"
	_, cfg, err := Load([]byte(base), Options{})
	if err != nil || cfg.SinkFlushInterval != actors.DefaultSinkFlushInterval {
		t.Errorf("default: %v, %v", cfg.SinkFlushInterval, err)
	}
	_, cfg, err = Load([]byte(base+"sink_options: {flush_interval: 20ms}\n"), Options{})
	if err != nil || cfg.SinkFlushInterval != 20*time.Millisecond {
		t.Errorf("20ms: %v, %v", cfg.SinkFlushInterval, err)
	}
	for _, v := range []string{"0s", "500us", "2h"} {
		_, _, err := Load([]byte(base+"sink_options: {flush_interval: "+v+"}\n"), Options{})
		var es Errors
		if !errors.As(err, &es) || es[0].Field != "sink_options.flush_interval" || !strings.Contains(es[0].Reason, "[1ms, 1h]") {
			t.Errorf("flush_interval %s: %v", v, err)
		}
	}
}

// TestSpecSinkFlushOnIdle: sink_options.flush_on_idle sets
// Config.SinkFlushOnIdle, true unless the spec says false; a value that is
// not a boolean is refused naming the field.
func TestSpecSinkFlushOnIdle(t *testing.T) {
	base := "source: {brokers: [\"k:9092\"]}\nsink: discard\n"
	for _, tc := range []struct {
		extra string
		want  bool
	}{
		{"", true},
		{"sink_options: {flush_on_idle: true}\n", true},
		{"sink_options: {flush_on_idle: false}\n", false},
	} {
		_, cfg, err := Load([]byte(base+tc.extra), Options{})
		if err != nil || cfg.SinkFlushOnIdle != tc.want {
			t.Errorf("%q: SinkFlushOnIdle %v, %v; want %v", tc.extra, cfg.SinkFlushOnIdle, err, tc.want)
		}
	}
	_, _, err := Load([]byte(base+"sink_options: {flush_on_idle: 5ms}\n"), Options{})
	if err == nil || !strings.Contains(err.Error(), "flush_on_idle") {
		t.Errorf("flush_on_idle: 5ms: %v, want an error naming flush_on_idle", err)
	}
}

// TestSpecSinkPrepared: sink_options.prepared false sets
// sinks.Config.TextStatements; left out or true, the MySQL sink prepares
// its upserts. A value that is not a boolean is refused naming the field.
func TestSpecSinkPrepared(t *testing.T) {
	base := "source: {brokers: [\"k:9092\"]}\nsink: discard\n"
	for _, tc := range []struct {
		extra string
		text  bool
	}{
		{"", false},
		{"sink_options: {prepared: true}\n", false},
		{"sink_options: {prepared: false}\n", true},
	} {
		spec, _, err := Load([]byte(base+tc.extra), Options{})
		if err != nil {
			t.Fatalf("%q: %v", tc.extra, err)
		}
		if got := spec.SinkConfig().TextStatements; got != tc.text {
			t.Errorf("%q: TextStatements %v, want %v", tc.extra, got, tc.text)
		}
	}
	_, _, err := Load([]byte(base+"sink_options: {prepared: sometimes}\n"), Options{})
	if err == nil || !strings.Contains(err.Error(), "prepared") {
		t.Errorf("prepared: sometimes: %v, want an error naming prepared", err)
	}
}

func TestSpecGroupID(t *testing.T) {
	for _, tc := range []struct {
		line, group, err string
	}{
		{"", "eddy-specjob", ""},
		{"  group_id: \"-\"\n", "", ""},
		{"  group_id: my-lag\n", "my-lag", ""},
		{"  group_id: \"two words\"\n", "", "source.group_id"},
	} {
		spec := "name: specjob\nsource:\n  brokers: [\"k:9092\"]\n" + tc.line + "sink: discard\n"
		_, cfg, err := Load([]byte(spec), Options{})
		if tc.err != "" {
			var es Errors
			if !errors.As(err, &es) || es[0].Field != tc.err {
				t.Errorf("%q: error %v, want one about %s", tc.line, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		if g := cfg.OffsetGroup(); g != tc.group {
			t.Errorf("%q: group %q, want %q", tc.line, g, tc.group)
		}
	}
}
