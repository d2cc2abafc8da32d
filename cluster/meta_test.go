package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
)

func TestMemberPlaceable(t *testing.T) {
	cases := []struct {
		name string
		m    control.Member
		want bool
	}{
		{"alive assignable", control.Member{Meta: control.Meta{Assignable: true}, Status: control.StatusAlive}, true},
		{"not assignable", control.Member{Status: control.StatusAlive}, false},
		{"failed", control.Member{Meta: control.Meta{Assignable: true}, Status: control.StatusFailed}, false},
		{"left", control.Member{Meta: control.Meta{Assignable: true}, Status: control.StatusLeft}, false},
		{"leaving", control.Member{Meta: control.Meta{Assignable: true, Leaving: true}, Status: control.StatusAlive}, false},
		{"stopping", control.Member{Meta: control.Meta{Assignable: true, Stopping: true}, Status: control.StatusAlive}, false},
	}
	for _, c := range cases {
		if got := c.m.Placeable(); got != c.want {
			t.Errorf("%s: Placeable = %v, want %v", c.name, got, c.want)
		}
	}
}

// Concurrent UpdateMeta calls that change different fields all take effect
// locally and reach the other member.
func TestUpdateMetaConcurrentFields(t *testing.T) {
	a := start(t, "a", nil)
	b := start(t, "b", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Join(ctx, []string{a.LocalMeta().GossipAddr}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := uint64(1); i <= 20; i++ {
			_ = a.UpdateMeta(func(m *control.Meta) { m.HTTPAddr = fmt.Sprint(i) }, time.Second)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 21; i++ {
			_ = a.UpdateMeta(func(m *control.Meta) { m.Assignable = i%2 == 0 }, time.Second)
		}
	}()
	wg.Wait()
	if m := a.LocalMeta(); m.HTTPAddr != "20" || !m.Assignable {
		t.Fatalf("local meta %+v, want HTTPAddr 20 and Assignable", m)
	}
	eventually(t, 3*time.Second, func() error {
		m, ok := b.Member("a")
		if !ok || m.HTTPAddr != "20" || !m.Assignable {
			return fmt.Errorf("b sees a as %+v", m)
		}
		return nil
	})
	if err := a.UpdateMeta(func(m *control.Meta) { m.ID = "x" }, time.Second); err == nil {
		t.Error("UpdateMeta changed the node id")
	}
	a.Shutdown()
	if err := a.UpdateMeta(func(m *control.Meta) { m.HTTPAddr += "x" }, time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("UpdateMeta after Shutdown: %v, want ErrShutdown", err)
	}
}
