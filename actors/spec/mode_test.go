package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestModes: the conversion is the same in Run and Cluster mode; a
// cluster refuses broadcast.devices_file and metrics.pushgateway, through
// Spec.Config (first mistake) and Load (every mistake, with its line).
func TestModes(t *testing.T) {
	const base = "source: {brokers: [\"k:9092\"]}\nsink: discard\n"
	s, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	run, err := s.Config(Run)
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := s.Config(Cluster)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(run, cluster) {
		t.Errorf("Run and Cluster convert differently:\n%+v\n%+v", run, cluster)
	}
	const extra = "broadcast: {devices_file: d.json}\nmetrics: {pushgateway: \"http://127.0.0.1:9091\"}\n"
	s, err = Parse([]byte(base + extra))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Config(Run); err != nil {
		t.Errorf("Run: %v", err)
	}
	if _, err := s.Config(Cluster); err == nil || !strings.Contains(err.Error(), "broadcast.devices_file") || !strings.Contains(err.Error(), "metrics.pushgateway") {
		t.Errorf("Cluster: %v, want both fields refused", err)
	}
	if _, err := s.Config(Mode(7)); err == nil || !strings.Contains(err.Error(), "unknown mode Mode(7)") {
		t.Errorf("Config(Mode(7)): %v", err)
	}
	if _, _, err := Load([]byte(base), Options{Mode: 7}); err == nil || errors.Is(err, ErrBad) || !strings.Contains(err.Error(), "unknown mode Mode(7)") {
		t.Errorf("Load in Mode(7): %v, want a caller error, not ErrBad", err)
	}
	_, _, err = Load([]byte(base+extra), Options{Mode: Cluster})
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 || es[0].Field != "broadcast.devices_file" || es[0].Line != 3 || es[1].Field != "metrics.pushgateway" || es[1].Line != 4 {
		t.Errorf("Load in Cluster mode: %v, want the two fields with their lines", err)
	}
	if _, _, err := Load([]byte(base+extra), Options{Mode: Run}); err != nil {
		t.Errorf("Load in Run mode: %v", err)
	}
}
