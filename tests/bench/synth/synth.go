// Package synth writes the synthetic datasets of eddy's benchmarks: many
// devices, each with an open window and an open work period.
package synth

import (
	"bufio"
	"fmt"
	"os"
	"time"
)

// Write writes an NDJSON dataset of devices devices with perDevice
// readings each, 30 s apart (devices interleaved in event-time order), every
// metric above the work threshold 50.
func Write(path string, devices, perDevice int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	base := time.Date(2019, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	step := int64(30_000)
	for i := 0; i < perDevice; i++ {
		for d := 0; d < devices; d++ {
			t := base + int64(i)*step + int64(d)*step/int64(devices)
			fmt.Fprintf(w, `{"pboxid":"dev-%06d","event_time":%d,"metric":%d.5,"latitude":57.1,"longitude":-2.1}`+"\n", d, t, 51+(d+i)%40)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
