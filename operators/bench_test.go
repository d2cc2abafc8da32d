package operators

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// seedMessages returns n seed-schema messages of devices devices, one
// reading per device every 150 s, in event-time order.
func seedMessages(n, devices int) [][]byte {
	base := time.Date(2019, 3, 1, 0, 0, 0, 0, time.UTC)
	msgs := make([][]byte, n)
	for i := range msgs {
		dev := i % devices
		tick := i / devices
		ts := base.Add(time.Duration(tick)*150*time.Second + time.Duration(dev)*150*time.Second/time.Duration(devices))
		metric := 5 + float64((i*7919)%1000)/10 // 5.0 .. 104.9: about half above 50
		msgs[i] = fmt.Appendf(nil, `{"event_time":%q,"metric":%s,"pboxid":"%d","latitude":57.106,"longitude":-2.088}`,
			ts.Format("2006-01-02 15:04:05"), strconv.FormatFloat(metric, 'f', 2, 64), 17000+dev)
	}
	return msgs
}

func BenchmarkDecode(b *testing.B) {
	msgs := seedMessages(4096, 23)
	dec := NewDecoder(DefaultConfig())
	var r rawDecoded
	bytes := 0
	for _, m := range msgs {
		bytes += len(m)
	}
	b.SetBytes(int64(bytes / len(msgs)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := dec.decode(msgs[i%len(msgs)], &r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decodes/s")
}

func BenchmarkDecodePublic(b *testing.B) {
	msgs := seedMessages(4096, 23)
	dec := NewDecoder(DefaultConfig())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := dec.Decode(msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decodes/s")
}

func BenchmarkPartitionProcess(b *testing.B) {
	for _, tc := range []struct {
		devices int
		window  WindowSpec
	}{
		{23, WindowSpec{Kind: WindowTumbling, Size: time.Minute}},
		{1000, WindowSpec{Kind: WindowTumbling, Size: time.Minute}},
		{1000, WindowSpec{Kind: WindowSliding, Size: 10 * time.Minute, Slide: time.Minute}},
		{1000, WindowSpec{Kind: WindowSession, Gap: 5 * time.Minute}},
	} {
		b.Run(fmt.Sprintf("%s/devices=%d", tc.window.Kind, tc.devices), func(b *testing.B) {
			msgs := seedMessages(200_000, tc.devices)
			devs := DeviceMap{}
			for d := 0; d < tc.devices; d++ {
				devs[strconv.Itoa(17000+d)] = DeviceInfo{Company: "acme", Site: "site" + strconv.Itoa(d%7)}
			}
			cfg := DefaultConfig()
			cfg.Window = tc.window
			p := NewPartition(0, cfg, devs)
			var out Output
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%len(msgs) == 0 && i > 0 {
					// Input wraps around: start a fresh partition so that
					// records are not late (state reset is not timed fairly,
					// but it is rare).
					p = NewPartition(0, cfg, devs)
				}
				p.Process(int64(i), msgs[i%len(msgs)], &out)
				if len(out.Readings) >= 1024 {
					out.Reset()
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
