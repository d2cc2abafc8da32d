package spec

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestLoadValueMatchesLoad: a Spec built in Go converts to the
// configuration Load gives for the same YAML, and its mistakes are
// the same Errors naming the same fields (without lines).
func TestLoadValueMatchesLoad(t *testing.T) {
	const doc = "source:\n  brokers: [\"127.0.0.1:9092\"]\nwindow:\n  kind: sliding\n  size: 10m\n  slide: 2m\nwork_periods:\n  threshold: 40\nformat:\n  time_zone: Europe/Berlin\nsink: discard\n"
	_, want, err := Load([]byte(doc), Options{Bounded: true})
	if err != nil {
		t.Fatal(err)
	}
	var s Spec
	s.Source.Brokers = []string{"127.0.0.1:9092"}
	size, slide, th := Duration(10*time.Minute), Duration(2*time.Minute), 40.0
	s.Window.Kind, s.Window.Size, s.Window.Slide = "sliding", &size, &slide
	s.WorkPeriods.Threshold = &th
	s.Format.TimeZone = "Europe/Berlin"
	s.Sink = "discard"
	_, got, err := LoadValue(&s, Options{Bounded: true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadValue: %+v\nLoad:      %+v", got, want)
	}
	if s.Source.Bounded {
		t.Error("LoadValue changed the caller's Spec (Bounded)")
	}

	bad := Duration(3 * time.Minute)
	s.Window.Slide = &bad
	s.Window.Size = &slide
	s.Sink = "nosuch:x"
	_, _, err = LoadValue(&s, Options{})
	var es Errors
	if !errors.As(err, &es) || !errors.Is(err, ErrBad) {
		t.Fatalf("want Errors wrapping ErrBad, got %v", err)
	}
	fields := map[string]bool{}
	for _, e := range es {
		fields[e.Field] = true
		if e.Line != 0 {
			t.Errorf("%v: a line without a spec text", e)
		}
	}
	if !fields["sink"] || !fields["window.slide"] {
		t.Errorf("want mistakes naming sink and window.slide, got %v", err)
	}
}
