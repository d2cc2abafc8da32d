package deploy

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// alertRule is one rule of deploy/prometheus/alerts.yml.
type alertRule struct {
	Group, Alert, Expr, For string
	Labels, Annotations     map[string]string
}

func loadAlerts(t *testing.T) []alertRule {
	t.Helper()
	path := deployPath("prometheus", "alerts.yml")
	docs := yamlDocs(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: %d YAML documents, want 1", path, len(docs))
	}
	var rules []alertRule
	for gi, g := range l(t, docs[0]["groups"], "groups") {
		gm := m(t, g, "group")
		gname := s(t, gm["name"], "group name")
		for ri, r := range l(t, gm["rules"], gname+".rules") {
			rm := m(t, r, gname+" rule")
			for k := range rm {
				switch k {
				case "alert", "expr", "for", "labels", "annotations", "keep_firing_for":
				default:
					t.Errorf("group %d rule %d: unknown key %q", gi, ri, k)
				}
			}
			ar := alertRule{Group: gname, Labels: map[string]string{}, Annotations: map[string]string{}}
			ar.Alert = s(t, rm["alert"], "alert")
			ar.Expr = s(t, rm["expr"], ar.Alert+".expr")
			if v, ok := rm["for"]; ok {
				ar.For = s(t, v, ar.Alert+".for")
			}
			for k, v := range m(t, rm["labels"], ar.Alert+".labels") {
				ar.Labels[k] = s(t, v, ar.Alert+".labels."+k)
			}
			for k, v := range m(t, rm["annotations"], ar.Alert+".annotations") {
				ar.Annotations[k] = s(t, v, ar.Alert+".annotations."+k)
			}
			rules = append(rules, ar)
		}
	}
	return rules
}

var promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

// TestAlertRules checks the shape of every rule and that its PromQL uses
// only metrics and labels of the code.
func TestAlertRules(t *testing.T) {
	rules := loadAlerts(t)
	seen := map[string]bool{}
	var exprs []string
	for _, r := range rules {
		if seen[r.Alert] {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if !regexp.MustCompile(`^Eddy[A-Z][A-Za-z]+$`).MatchString(r.Alert) {
			t.Errorf("alert %q: name should be EddyCamelCase", r.Alert)
		}
		switch r.Labels["severity"] {
		case "warning", "critical":
		default:
			t.Errorf("alert %s: labels.severity %q, want warning or critical", r.Alert, r.Labels["severity"])
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("alert %s: needs annotations summary and description", r.Alert)
		}
		if r.For != "" {
			if !promDuration.MatchString(r.For) {
				t.Errorf("alert %s: for %q is not a Prometheus duration like 5m", r.Alert, r.For)
			}
		}
		// $labels.x in templates must be labels the expression keeps; at
		// least they must be known labels.
		for _, a := range r.Annotations {
			for _, mm := range regexp.MustCompile(`\$labels\.([a-z_]+)`).FindAllStringSubmatch(a, -1) {
				refs := parsePromQL([]string{r.Expr})
				if !targetLabels[mm[1]] && !refs.grouping[mm[1]] && !labelOfAny(t, refs, mm[1]) {
					t.Errorf("alert %s: annotation uses $labels.%s, which its expression does not have", r.Alert, mm[1])
				}
			}
		}
		exprs = append(exprs, r.Expr)
		checkPromQL(t, "alert "+r.Alert, []string{r.Expr})
	}

	// The alerts the deployment promises (deploy/README.md): each is about
	// the metric named here.
	refs := parsePromQL(exprs)
	for _, want := range []string{
		"eddy_partition_lag_records",         // lag growing
		"eddy_partition_watermark_seconds",   // watermark stalled
		"eddy_records_failed_total",          // dead-letter rate
		"eddy_records_late_total",            // late rate
		"eddy_sink_flush_seconds_bucket",     // flush latency
		"eddy_actor_restarts_total",          // actor restarts
		"eddy_raft_state",                    // no leader
		"eddy_raft_leader_changes_total",     // leader changes
		"eddy_members",                       // member count drop
		"eddy_record_latency_seconds_bucket", // record latency
		"eddy_event_time_lag_seconds",        // event-time lag
	} {
		if !refs.metrics[want] {
			t.Errorf("no alert uses %s", want)
		}
	}
}

func labelOfAny(t *testing.T, refs promqlRefs, label string) bool {
	defs := codeMetrics(t)
	for name := range refs.metrics {
		if d, ok := seriesName(defs, name); ok && d.Labels[label] {
			return true
		}
	}
	return false
}

// TestPrometheusConfig checks the scrape configuration: it loads the alert
// rules, and scrapes every eddy service of the compose stack on the port
// the service serves /metrics on.
func TestPrometheusConfig(t *testing.T) {
	path := deployPath("prometheus", "prometheus.yml")
	docs := yamlDocs(t, path)
	cfg := docs[0]
	files := strs(t, cfg["rule_files"], "rule_files")
	if len(files) != 1 || files[0] != "alerts.yml" {
		t.Errorf("rule_files = %v, want [alerts.yml]", files)
	}
	targets := map[string]string{} // host:port -> scrape job
	for _, sc := range l(t, cfg["scrape_configs"], "scrape_configs") {
		scm := m(t, sc, "scrape config")
		job := s(t, scm["job_name"], "job_name")
		if p, ok := scm["metrics_path"]; ok && p != "/metrics" {
			t.Errorf("job %s: metrics_path %v; eddy serves /metrics", job, p)
		}
		for _, st := range l(t, scm["static_configs"], job+".static_configs") {
			for _, tg := range strs(t, m(t, st, "static config")["targets"], job+".targets") {
				targets[tg] = job
			}
		}
	}

	// Every compose service that serves /metrics is a target, on its port.
	for svc, c := range composeEddyCommands(t) {
		var addr string
		switch strings.Join(c.Sub, " ") {
		case "node":
			addr = c.flag("http-addr")
		case "run", "dev":
			addr = c.flag("metrics-addr")
		default:
			continue // broker and replay serve no metrics
		}
		port := addr[strings.LastIndex(addr, ":")+1:]
		if _, ok := targets[svc+":"+port]; !ok {
			t.Errorf("compose service %s serves /metrics on %s, but prometheus.yml has no target %s:%s (targets %v)", svc, addr, svc, port, targets)
		}
	}
}

// TestPromtool runs promtool on the configuration, the rules and the alert
// unit tests deploy/prometheus/alerts_test.yml, when promtool is installed.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH (Debian: apt-get install prometheus); skipping promtool check config/rules and the alert unit tests")
	}
	dir := deployPath("prometheus")
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		out, err := run(t, time.Minute, dir, nil, promtool, args...)
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestAlertUnitTestsCoverEveryAlert: every alert of alerts.yml has a case
// in alerts_test.yml where it fires.
func TestAlertUnitTestsCoverEveryAlert(t *testing.T) {
	docs := yamlDocs(t, deployPath("prometheus", "alerts_test.yml"))
	firing := map[string]bool{}
	for _, tc := range l(t, docs[0]["tests"], "tests") {
		art, ok := m(t, tc, "test")["alert_rule_test"]
		if !ok {
			continue
		}
		for _, a := range l(t, art, "alert_rule_test") {
			am := m(t, a, "alert_rule_test entry")
			if exp, ok := am["exp_alerts"]; ok && len(l(t, exp, "exp_alerts")) > 0 {
				firing[s(t, am["alertname"], "alertname")] = true
			}
		}
	}
	for _, r := range loadAlerts(t) {
		if !firing[r.Alert] {
			t.Errorf("alerts_test.yml has no case where %s fires", r.Alert)
		}
	}
}
