package oracle

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
)

// aberdeenPath is the real dataset (see /work/shared/data/README.md);
// EDDY_ABERDEEN overrides it.
func aberdeenPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("EDDY_ABERDEEN")
	if p == "" {
		p = filepath.Join("..", "..", "..", "shared", "data", "aberdeen-sds011-2019-03-01_2019-05-24.csv.gz")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("Aberdeen dataset not found (%v); set EDDY_ABERDEEN to its path", err)
	}
	return p
}

func aberdeenOptions() Options {
	o := DefaultOptions()
	o.Delimiter = ';'
	o.Mapping, _ = ParseMapping("pboxid=sensor_id,event_time=timestamp,metric=P1,latitude=lat,longitude=lon")
	return o
}

// TestAberdeen checks the documented facts of the real dataset under the
// job's defaults (12 partitions, 5 s out-of-orderness, 1 min tumbling
// windows, threshold 50, max gap 10 min) and logs the window and work-period
// counts a bounded eddy run must reproduce.
func TestAberdeen(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 929,022 records; skipped with -short")
	}
	began := time.Now()
	res, err := ComputeFile(aberdeenPath(t), aberdeenOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Aberdeen oracle in %v: %s", time.Since(began).Round(time.Millisecond), res.Summary())

	// The file is sorted by timestamp, so with 12 partitions no record is late.
	checkCounts(t, res, 929022, 0, 929021, 0, 1)
	if len(res.DeadLetterRecords) == 1 {
		dl := res.DeadLetterRecords[0]
		// File line 65,965 = data record 65,964: sensor 22885, empty P1.
		if dl.Line != 65964 || !strings.Contains(dl.Reason, "metric") || dl.Partition != Partition("22885", 12) {
			t.Errorf("dead letter %+v, want record 65964 (sensor 22885) with a metric reason", dl)
		}
	}

	// Every reading is in exactly one tumbling window.
	var inWindows, sensors int64
	prev := ""
	for _, w := range res.Windows {
		inWindows += w.Count
		if w.PboxID != prev {
			sensors++
			prev = w.PboxID
		}
	}
	if inWindows != res.Readings {
		t.Errorf("windows hold %d readings, want %d", inWindows, res.Readings)
	}
	if sensors != 23 {
		t.Errorf("windows of %d devices, want 23 sensors", sensors)
	}
	// Every reading with P1 > 50 is in exactly one work period.
	var working int64
	for _, p := range res.WorkPeriods {
		working += p.Samples
		if p.MaxMetric <= 50 || p.End < p.Start {
			t.Errorf("bad work period %v", p)
		}
	}
	if working != 25406 {
		t.Errorf("work periods hold %d readings, want the 25,406 with P1 > 50", working)
	}
	var total int64
	for _, n := range res.PartitionRecords {
		total += n
	}
	t.Logf("Aberdeen: %d windows (1 min tumbling), %d work periods (P1 > 50, max gap 10 min); records per partition %v",
		len(res.Windows), len(res.WorkPeriods), res.PartitionRecords)
	if total != res.Records {
		t.Errorf("partitions hold %d records, want %d", total, res.Records)
	}
}

// TestLimit: Options.Limit computes over the first records only, like
// `eddy replay --limit`.
func TestLimit(t *testing.T) {
	opts := AberdeenOptions()
	opts.Limit = 1000
	res, err := Compute(aberdeen.Open(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 1000 || res.Readings+res.Late+res.DeadLetters != 1000 {
		t.Fatalf("limit 1000: %s", res.Summary())
	}
	opts.Limit = -1
	if _, err := Compute(aberdeen.Open(), opts); !errors.Is(err, ErrBadOptions) {
		t.Fatalf("limit -1: %v, want ErrBadOptions", err)
	}
}
