package faults

import (
	"fmt"
	"strings"
	"testing"
)

// sinkKeys are the sink tables and an expression of a row's key in them.
var sinkKeys = map[string]string{
	"readings":          "CONCAT(OLD.source_partition, '/', OLD.source_offset)",
	"window_aggregates": "CONCAT(OLD.pboxid, '@', OLD.window_start)",
	"work_periods":      "CONCAT(OLD.pboxid, '@', OLD.period_start)",
	"late_records":      "CONCAT(OLD.source_partition, '/', OLD.source_offset)",
	"dead_letters":      "CONCAT(OLD.source_partition, '/', OLD.source_offset)",
}

// epochAudit installs, in the sink database dsn (its tables must exist),
// a table epoch_audit and a BEFORE UPDATE trigger on every sink table that
// records each update whose NEW.epoch is below OLD.epoch: a write by a
// lower-epoch (stale) lease holder over a newer one's row. It fails t when a
// table has no epoch column. check returns the audit rows (empty = no row
// ever regressed).
func epochAudit(t *testing.T, dsn string) (check func() []string) {
	t.Helper()
	db := openDB(t, dsn)
	var missing []string
	for tbl := range sinkKeys {
		var n int
		err := db.QueryRow("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? AND column_name = 'epoch'", tbl).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			missing = append(missing, tbl)
		}
	}
	if len(missing) > 0 {
		t.Errorf("sink tables without an epoch column (rows must carry their lease epoch so a stale owner cannot overwrite a newer one): %s", strings.Join(missing, ", "))
		return func() []string { return nil }
	}
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS epoch_audit (
	id        BIGINT AUTO_INCREMENT PRIMARY KEY,
	tbl       VARCHAR(64)  NOT NULL,
	row_key   VARCHAR(255) NOT NULL,
	old_epoch BIGINT       NOT NULL,
	new_epoch BIGINT       NOT NULL,
	at        DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
)`); err != nil {
		t.Fatal(err)
	}
	for tbl, key := range sinkKeys {
		q := fmt.Sprintf(`CREATE TRIGGER IF NOT EXISTS %[1]s_epoch_audit BEFORE UPDATE ON %[1]s FOR EACH ROW
BEGIN
	IF NEW.epoch < OLD.epoch THEN
		INSERT INTO epoch_audit (tbl, row_key, old_epoch, new_epoch) VALUES ('%[1]s', %[2]s, OLD.epoch, NEW.epoch);
	END IF;
END`, tbl, key)
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("create trigger on %s: %v", tbl, err)
		}
	}
	t.Logf("epoch audit: BEFORE UPDATE triggers on %d sink tables", len(sinkKeys))
	return func() []string {
		rows, err := db.Query("SELECT tbl, row_key, old_epoch, new_epoch, at FROM epoch_audit ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var tbl, key, at string
			var o, n int64
			if err := rows.Scan(&tbl, &key, &o, &n, &at); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s %s: epoch %d overwritten at epoch %d at %s", tbl, key, o, n, at))
		}
		return out
	}
}
