// Package secret keeps passwords out of everything eddy prints: banners,
// errors, logs and API answers. It knows where passwords live in the URLs
// eddy accepts (sink URLs, checkpoint storage URLs) and replaces them with
// Mask, the way users of go-sql-driver/mysql redact a DSN: mysql.ParseDSN,
// set Config.Passwd, Config.FormatDSN.
//
//	secret.RedactURL("mysql:eddy:pw@tcp(db:3306)/eddy") // "mysql:eddy:xxxxx@tcp(db:3306)/eddy"
//	secret.RedactText(specYAML)                          // every DSN and URL password in the text
//
// Functions here never fail: text they cannot parse is redacted by a
// conservative fallback (everything between the user name and the last '@'
// of a DSN is masked).
package secret

import (
	"regexp"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// Mask replaces a password.
const Mask = "xxxxx"

// RedactDSN returns a go-sql-driver MySQL DSN (user:pass@tcp(host:port)/db?params)
// with its password replaced by Mask. A DSN without a password is returned
// unchanged; one that does not parse has everything between the first ':'
// and the last '@' before its database masked.
func RedactDSN(dsn string) string {
	if cfg, err := mysql.ParseDSN(dsn); err == nil {
		if cfg.Passwd == "" || envRef.MatchString(cfg.Passwd) {
			return dsn
		}
		cfg.Passwd = Mask
		return cfg.FormatDSN()
	}
	// Fallback on go-sql-driver's own split: [user[:password]@][net[(addr)]]/dbname.
	head := dsn
	if i := strings.LastIndex(dsn, "/"); i >= 0 {
		head = dsn[:i]
	}
	at := strings.LastIndex(head, "@")
	if at < 0 {
		return dsn
	}
	colon := strings.Index(head[:at], ":")
	if colon < 0 || envRef.MatchString(dsn[colon+1:at]) {
		return dsn
	}
	return dsn[:colon+1] + Mask + dsn[at:]
}

// envRef matches a password that is only a reference to an environment
// variable without default ("${MYSQL_PASSWORD}", a job spec's form): it is
// no secret and stays visible.
var envRef = regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*\}$`)

// urlUserinfo matches the password of scheme://user:password@host URLs.
var urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@"']*:)([^@\s"'/]+)@`)

// RedactURL returns a sink or storage URL with its password masked: the
// DSN of mysql:DSN, the userinfo password of scheme://user:pass@host
// (postgres:// included), and a query parameter password=.
func RedactURL(u string) string {
	if rest, ok := strings.CutPrefix(u, "mysql:"); ok {
		slashes := ""
		if r, ok := strings.CutPrefix(rest, "//"); ok {
			slashes, rest = "//", r
		}
		return "mysql:" + slashes + RedactDSN(rest)
	}
	return maskUserinfo(u)
}

// urlPassword matches a password given as a URL query parameter
// (postgres://host/db?user=u&password=p, as libpq and pgx accept it).
var urlPassword = regexp.MustCompile(`([?&]password=)([^&\s"']+)`)

func maskUserinfo(s string) string {
	s = urlUserinfo.ReplaceAllStringFunc(s, func(m string) string {
		sm := urlUserinfo.FindStringSubmatch(m)
		if envRef.MatchString(sm[2]) {
			return m
		}
		return sm[1] + Mask + "@"
	})
	return urlPassword.ReplaceAllStringFunc(s, func(m string) string {
		sm := urlPassword.FindStringSubmatch(m)
		if envRef.MatchString(sm[2]) {
			return m
		}
		return sm[1] + Mask
	})
}

// mysqlInText matches a mysql: sink URL inside free text (a YAML spec, an
// error message): it ends at white space or a quote.
var mysqlInText = regexp.MustCompile(`mysql:[^\s"'\x60]+`)

// bareDSN matches user:password@net( of a DSN without the mysql: prefix.
var bareDSN = regexp.MustCompile(`((?:^|[\s"'(=])[^\s"':@/()]+:)[^\s"'@]*@((?:tcp|tcp6|unix)\()`)

// RedactText masks every password of a mysql: URL, of a URL with
// userinfo, or of a URL query parameter password= found in s (a job spec, an error message, a log line).
func RedactText(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	s = mysqlInText.ReplaceAllStringFunc(s, func(m string) string {
		// Keep punctuation of the surrounding text (a YAML flow list).
		body := strings.TrimRight(m, ",]})")
		return RedactURL(body) + m[len(body):]
	})
	s = bareDSN.ReplaceAllStringFunc(s, func(m string) string {
		sm := bareDSN.FindStringSubmatch(m)
		if strings.HasSuffix(sm[1], "mysql:") {
			return m // a mysql: URL, done above
		}
		if pw := strings.TrimSuffix(strings.TrimPrefix(m, sm[1]), "@"+sm[2]); envRef.MatchString(pw) {
			return m
		}
		return sm[1] + Mask + "@" + sm[2]
	})
	return maskUserinfo(s)
}

// RedactError returns err with its message passed through RedactText; it
// unwraps to err, so errors.Is and errors.As keep working. nil stays nil.
func RedactError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := RedactText(msg)
	if red == msg {
		return err
	}
	return &redacted{msg: red, err: err}
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }
