package operators

import (
	"fmt"
	"runtime"
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

// BenchmarkOpenDeviceMemory measures the heap a Partition holds per open
// device, all states in memory (no StateStore): the devices of
// tests/bench/synth, two readings 30 s apart each, so that every device ends
// with an open window, buffered readings and an open work period. It
// reports the live heap after a GC divided by the devices (bytes/device).
func BenchmarkOpenDeviceMemory(b *testing.B) {
	const devices = 100_000
	base := time.Date(2019, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	msgs := make([][]byte, 0, 2*devices)
	for i := range 2 {
		for d := range devices {
			t := base + int64(i)*30_000 + int64(d)*30_000/devices
			msgs = append(msgs, fmt.Appendf(nil, `{"pboxid":"dev-%06d","event_time":%d,"metric":%d.5,"latitude":57.1,"longitude":-2.1}`, d, t, 51+(d+i)%40))
		}
	}
	var out Output
	var perDevice float64
	for range b.N {
		b.StopTimer()
		before := liveHeap()
		b.StartTimer()
		p := NewPartition(0, DefaultConfig(), nil)
		for i, m := range msgs {
			p.Process(int64(i), m, &out)
			out.Reset()
		}
		b.StopTimer()
		if p.Devices() != devices {
			b.Fatalf("%d open devices, want %d", p.Devices(), devices)
		}
		perDevice = float64(liveHeap()-before) / devices
		runtime.KeepAlive(p)
		b.StartTimer()
	}
	b.ReportMetric(perDevice, "bytes/device")
}

// liveHeap returns the bytes of live heap objects after a full GC.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
