package promreg

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func counter(name string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: name})
}

// TestForJobLabelsAndUnregisters: two jobs register the same metric names
// on one registry, told apart by eddy_job; UnregisterAll removes one job's
// series only, and the job registers again.
func TestForJobLabelsAndUnregisters(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := ForJob(reg, "a"), ForJob(reg, "b")
	ca, cb := counter("eddy_x_total"), counter("eddy_x_total")
	a.MustRegister(ca)
	b.MustRegister(cb)
	ca.Add(2)
	cb.Add(3)
	if n, _ := testutil.GatherAndCount(reg, "eddy_x_total"); n != 2 {
		t.Fatalf("%d series, want 2", n)
	}
	mfs, _ := reg.Gather()
	got := map[string]float64{}
	for _, m := range mfs[0].Metric {
		got[m.Label[0].GetName()+"="+m.Label[0].GetValue()] = m.Counter.GetValue()
	}
	if got["eddy_job=a"] != 2 || got["eddy_job=b"] != 3 {
		t.Fatalf("series %v, want eddy_job=a 2, eddy_job=b 3", got)
	}
	var are prometheus.AlreadyRegisteredError
	if err := ForJob(reg, "a").Register(counter("eddy_x_total")); !errors.As(err, &are) {
		t.Fatalf("second registration of job a: %v, want AlreadyRegisteredError", err)
	}
	a.UnregisterAll()
	a.UnregisterAll() // idempotent
	if n, _ := testutil.GatherAndCount(reg, "eddy_x_total"); n != 1 {
		t.Fatalf("after a's UnregisterAll: %d series, want 1 (b's)", n)
	}
	if err := ForJob(reg, "a").Register(counter("eddy_x_total")); err != nil {
		t.Fatalf("job a registering again: %v", err)
	}
}

// TestRegisterAllIsAllOrNothing: a conflict half-way unregisters what the
// call registered before it.
func TestRegisterAllIsAllOrNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(counter("eddy_b_total"))
	g := NewGroup(reg)
	if err := g.RegisterAll(counter("eddy_a_total"), counter("eddy_b_total")); err == nil {
		t.Fatal("conflict not reported")
	}
	if n, _ := testutil.GatherAndCount(reg, "eddy_a_total"); n != 0 {
		t.Fatalf("eddy_a_total left registered after the failed RegisterAll")
	}
	if err := g.RegisterAll(counter("eddy_a_total")); err != nil {
		t.Fatal(err)
	}
	g.UnregisterAll()
	if n, _ := testutil.GatherAndCount(reg, "eddy_b_total"); n != 1 {
		t.Fatal("UnregisterAll removed a collector the Group did not register")
	}
	none := NewGroup(nil)
	if err := none.RegisterAll(counter("eddy_a_total")); err != nil {
		t.Fatal(err)
	}
	none.UnregisterAll()
}
