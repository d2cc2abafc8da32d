package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestMemberPlaceable(t *testing.T) {
	cases := []struct {
		name string
		m    Member
		want bool
	}{
		{"alive assignable", Member{Meta: Meta{Assignable: true}, Status: StatusAlive}, true},
		{"not assignable", Member{Status: StatusAlive}, false},
		{"failed", Member{Meta: Meta{Assignable: true}, Status: StatusFailed}, false},
		{"left", Member{Meta: Meta{Assignable: true}, Status: StatusLeft}, false},
		{"leaving", Member{Meta: Meta{Assignable: true, Leaving: true}, Status: StatusAlive}, false},
		{"stopping", Member{Meta: Meta{Assignable: true, Stopping: true}, Status: StatusAlive}, false},
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
			_ = a.UpdateMeta(func(m *Meta) { m.HTTPAddr = fmt.Sprint(i) }, time.Second)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 21; i++ {
			_ = a.UpdateMeta(func(m *Meta) { m.Assignable = i%2 == 0 }, time.Second)
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
	if err := a.UpdateMeta(func(m *Meta) { m.ID = "x" }, time.Second); err == nil {
		t.Error("UpdateMeta changed the node id")
	}
	a.Shutdown()
	if err := a.UpdateMeta(func(m *Meta) { m.HTTPAddr += "x" }, time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("UpdateMeta after Shutdown: %v, want ErrShutdown", err)
	}
}
