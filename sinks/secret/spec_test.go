package secret

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestRedactSpec(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// In place: the rest of the text is kept byte for byte.
		{"name: j\nsource:\n  sasl:\n    mechanism: PLAIN\n    user: eddy\n    password: s3cret-pw # comment\n",
			"name: j\nsource:\n  sasl:\n    mechanism: PLAIN\n    user: eddy\n    password: xxxxx # comment\n"},
		{"source:\n  sasl: {user: u, password: \"s3cret \\\" pw\"}\n", "source:\n  sasl: {user: u, password: xxxxx}\n"},
		{"source:\n  sasl:\n    password: 'it''s-s3cret'\n", "source:\n  sasl:\n    password: xxxxx\n"},
		{"título: ü\nsasl: {Password: s3cret}\n", "título: ü\nsasl: {Password: xxxxx}\n"},
		// References to the environment stay as written.
		{"source:\n  sasl:\n    password: ${KAFKA_PASSWORD}\n", "source:\n  sasl:\n    password: ${KAFKA_PASSWORD}\n"},
		{"source:\n  sasl:\n    password: \"${KAFKA_PASSWORD}\"\n", "source:\n  sasl:\n    password: \"${KAFKA_PASSWORD}\"\n"},
		{"name: no-secret\n", "name: no-secret\n"},
		// Not YAML: the line fallback.
		{"{{ password: s3cret\n", "{{ password: xxxxx\n"},
	} {
		if got := RedactSpec(c.in); got != c.want {
			t.Errorf("RedactSpec(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
	// Forms that cannot be replaced in place are re-encoded, without the
	// password, keeping the other values.
	for _, in := range []string{
		"source:\n  sasl:\n    password: |\n      s3cret\n  topic: t\n",
		"pw: &pw s3cret\nsource:\n  sasl:\n    password: *pw\n  topic: t\n",
		"source:\n  sasl:\n    password: !!str s3cret\n  topic: t\n",
		"source:\n  sasl:\n    password: s3cret\n      continued\n  topic: t\n",
	} {
		got := RedactSpec(in)
		if strings.Contains(got, "s3cret") {
			t.Errorf("RedactSpec(%q) = %q keeps the password", in, got)
		}
		var v struct {
			Source struct {
				Topic string `yaml:"topic"`
				SASL  struct {
					Password string `yaml:"password"`
				} `yaml:"sasl"`
			} `yaml:"source"`
		}
		if err := yaml.Unmarshal([]byte(got), &v); err != nil || v.Source.Topic != "t" || v.Source.SASL.Password != Mask {
			t.Errorf("RedactSpec(%q) = %q: %+v, %v", in, got, v, err)
		}
	}
	// DSN passwords are masked too.
	if got := RedactSpec("sinks: [\"mysql:eddy:dsn-pw@tcp(db:3306)/eddy\"]\nsasl: {password: p}\n"); strings.Contains(got, "dsn-pw") || strings.Contains(got, "password: p}") {
		t.Errorf("RedactSpec: %q", got)
	}
}
