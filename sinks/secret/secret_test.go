package secret

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"mysql:eddy:s3cret@tcp(127.0.0.1:3306)/eddy", "mysql:eddy:xxxxx@tcp(127.0.0.1:3306)/eddy"},
		{"mysql://eddy:s3cret@tcp(db:3306)/eddy?parseTime=true", "mysql://eddy:xxxxx@tcp(db:3306)/eddy?parseTime=true"},
		{"mysql:eddy@tcp(127.0.0.1:3306)/eddy", "mysql:eddy@tcp(127.0.0.1:3306)/eddy"},
		{"mysql:root:p@ss:w@rd@tcp(h:1)/db", "mysql:root:xxxxx@tcp(h:1)/db"},
		// Does not parse (unknown parameter value): fallback still masks.
		{"mysql:eddy:s3cret@tcp(h:1)/db?parseTime=maybe", "mysql:eddy:xxxxx@tcp(h:1)/db?parseTime=maybe"},
		{"kafka://user:s3cret@k1:9092", "kafka://user:xxxxx@k1:9092"},
		{"s3://bucket/prefix", "s3://bucket/prefix"},
		{"sqlite:/tmp/a@b.db", "sqlite:/tmp/a@b.db"},
		// A reference to the environment is no secret; a default may be.
		{"mysql:eddy:${PW}@tcp(h:1)/db", "mysql:eddy:${PW}@tcp(h:1)/db"},
		{"mysql:eddy:${PW:-s3cret}@tcp(h:1)/db", "mysql:eddy:xxxxx@tcp(h:1)/db"},
		{"kafka://u:${KPW}@k:9092", "kafka://u:${KPW}@k:9092"},
		{"postgres://eddy:s3cret@127.0.0.1:5432/eddy?sslmode=disable", "postgres://eddy:xxxxx@127.0.0.1:5432/eddy?sslmode=disable"},
		{"postgresql://eddy:s3cret@db/eddy", "postgresql://eddy:xxxxx@db/eddy"},
		{"postgres://db/eddy?user=eddy&password=s3cret&sslmode=disable", "postgres://db/eddy?user=eddy&password=xxxxx&sslmode=disable"},
		{"postgres://db/eddy?password=${PGPW}", "postgres://db/eddy?password=${PGPW}"},
	} {
		if got := RedactURL(c.in); got != c.want {
			t.Errorf("RedactURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	spec := "name: x\nsink: \"mysql:eddy:s3cret@tcp(db:3306)/eddy\"\nsinks: [mysql:u:other-pw@tcp(h:1)/d, 'kafka://a:kpw@k:9092', \"postgres://p:pgpw@h/d\"]\n"
	got := RedactText(spec)
	for _, pw := range []string{"s3cret", "other-pw", "kpw", "pgpw"} {
		if strings.Contains(got, pw) {
			t.Errorf("RedactText left %q in:\n%s", pw, got)
		}
	}
	if !strings.Contains(got, "eddy:xxxxx@tcp(db:3306)/eddy") {
		t.Errorf("RedactText:\n%s", got)
	}
	if got := RedactText(`bad MySQL DSN "eddy:pw-bare@tcp(db:3306)/" names no database`); strings.Contains(got, "pw-bare") || !strings.Contains(got, `"eddy:xxxxx@tcp(db:3306)/"`) {
		t.Errorf("bare DSN: %s", got)
	}
	if got := RedactText(`sink: "mysql:eddy:${PW}@tcp(db:3306)/eddy"`); !strings.Contains(got, "${PW}") {
		t.Errorf("env reference masked: %s", got)
	}
	base := errors.New("base")
	err := RedactError(fmt.Errorf("open mysql:eddy:s3cret@tcp(db:3306)/eddy: %w", base))
	if strings.Contains(err.Error(), "s3cret") || !errors.Is(err, base) {
		t.Errorf("RedactError: %v (is base: %v)", err, errors.Is(err, base))
	}
}
