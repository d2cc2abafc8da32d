package main

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseChaosSchedule(t *testing.T) {
	sc, err := parseChaosSchedule("seed=42,kills=3,pauses=1,joins=1,interval=2s,pause=4s,down=500ms")
	if err != nil {
		t.Fatal(err)
	}
	want := chaosSchedule{Seed: 42, Kills: 3, Pauses: 1, Joins: 1, Interval: 2 * time.Second, Pause: 4 * time.Second, Down: 500 * time.Millisecond}
	if sc != want {
		t.Errorf("got %+v, want %+v", sc, want)
	}
	if sc, err := parseChaosSchedule("kills=1"); err != nil || sc.Seed == 0 || sc.Interval != 3*time.Second {
		t.Errorf("defaults: %+v, %v (want a random non-zero seed and interval 3s)", sc, err)
	}
	for in, msg := range map[string]string{
		"":                 "0 events",
		"kills=0":          "0 events",
		"kills=-1":         "must be >= 0",
		"kills=x":          "invalid syntax",
		"kills=1,pause=0s": "must be > 0",
		"kills=1,chaos=1":  `unknown key "chaos"`,
		"kills":            "not key=value",
		"kills=101":        "101 events",
	} {
		if _, err := parseChaosSchedule(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: err = %v, want it to mention %q", in, err, msg)
		}
	}
}

// The same seed gives the same events; one kill of two or more is the
// leader's.
func TestChaosEventsSeeded(t *testing.T) {
	sc := chaosSchedule{Seed: 7, Kills: 3, Pauses: 2, Joins: 1}
	a := sc.events(rand.New(rand.NewPCG(sc.Seed, 1)))
	b := sc.events(rand.New(rand.NewPCG(sc.Seed, 1)))
	if !slices.Equal(a, b) {
		t.Errorf("seed 7 gave %v, then %v", a, b)
	}
	count := map[string]int{}
	for _, e := range a {
		count[e]++
	}
	if count["kill"] != 2 || count["kill-leader"] != 1 || count["pause"] != 2 || count["join"] != 1 {
		t.Errorf("events %v", a)
	}
	if ev := (chaosSchedule{Kills: 1}).events(rand.New(rand.NewPCG(1, 1))); !slices.Equal(ev, []string{"kill"}) {
		t.Errorf("one kill: %v", ev)
	}
}
