package spec

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLoadEnv(t *testing.T) {
	env := map[string]string{"BROKER": "k1:9092", "PW": "p@ss: #x", "WIN": "5m", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	spec := `name: env
source:
  brokers: ["${BROKER}", "${OTHER:-k2:9092}"]
window:
  size: ${WIN}
batch_size: ${BATCH:-100}
sink: "mysql:eddy:${PW}@tcp(db:3306)/eddy"
sinks: ["ndjson:/tmp/$${literal}${EMPTY:-x}.ndjson"]
`
	s, cfg, err := Load([]byte(spec), Options{Lookup: lookup})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Source.Brokers, ","); got != "k1:9092,k2:9092" {
		t.Errorf("brokers %s", got)
	}
	if cfg.Operators.Window.Size != 5*time.Minute || cfg.BatchSize != 100 {
		t.Errorf("window %v batch %d", cfg.Operators.Window.Size, cfg.BatchSize)
	}
	if s.Sink != "mysql:eddy:p@ss: #x@tcp(db:3306)/eddy" || s.Sinks[0] != "ndjson:/tmp/${literal}x.ndjson" {
		t.Errorf("sinks %q %q", s.Sink, s.Sinks)
	}

	_, _, err = Load([]byte("source: {brokers: [\"${NOPE}\"]}\nsink: discard\n"), Options{Lookup: lookup})
	var es Errors
	if !errors.As(err, &es) || !errors.Is(err, ErrBad) || es[0].Field != "source.brokers[0]" || !strings.Contains(es[0].Reason, "NOPE is not set") {
		t.Errorf("unset variable: %v", err)
	}
}

func TestLoadSeveralMistakes(t *testing.T) {
	_, _, err := Load([]byte("source:\n  brokers: []\n  start_offset: first\nsink: discard\nbatch_size: -1\n"), Options{})
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 mistakes, got %v", err)
	}
	for i, f := range []string{"source.brokers", "source.start_offset", "batch_size"} {
		if es[i].Field != f {
			t.Errorf("mistake %d: field %q, want %q (%v)", i, es[i].Field, f, es[i])
		}
	}
}

// TestLoadHidesEnv: an error about an expanded field shows the
// ${NAME} reference, never what the environment holds.
func TestLoadHidesEnv(t *testing.T) {
	env := map[string]string{"SECRET_SINK": "oracle://leak-value-1234", "BROKER": "k1:9092"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	_, _, err := Load([]byte("source: {brokers: [\"${BROKER}\"]}\nsink: \"${SECRET_SINK}\"\nbatch_size: ${SECRET_SINK}\n"), Options{Lookup: lookup})
	if err == nil || strings.Contains(err.Error(), "leak-value-1234") || !strings.Contains(err.Error(), "${SECRET_SINK}") {
		t.Errorf("error: %v", err)
	}
	_, _, err = Load([]byte("source: {brokers: [\"${BROKER}\"]}\nsink: \"${SECRET_SINK}\"\n"), Options{Lookup: lookup})
	if err == nil || strings.Contains(err.Error(), "leak-value-1234") || !strings.Contains(err.Error(), `bad sink URL "${SECRET_SINK}"`) {
		t.Errorf("sink error: %v", err)
	}
	s, _, err := Load([]byte("source: {brokers: [\"${BROKER}\"]}\nsink: discard\n"), Options{Lookup: lookup})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.HideEnv("dial k1:9092: refused"); got != "dial ${BROKER}: refused" {
		t.Errorf("HideEnv: %q", got)
	}
}
