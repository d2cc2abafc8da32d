package deploy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource json.RawMessage          `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

// variableQuery is the query text of a query variable (Grafana stores a
// string, or an object with "query").
func variableQuery(q any) string {
	switch q := q.(type) {
	case string:
		return q
	case map[string]any:
		s, _ := q["query"].(string)
		return s
	}
	return ""
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, deployPath("grafana", "eddy-dashboard.json")), &d); err != nil {
		t.Fatalf("eddy-dashboard.json: %v", err)
	}
	return d
}

// allPanels flattens rows.
func (d dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// exprs returns every PromQL expression of the dashboard, by panel title.
func (d dashboard) exprs() map[string][]string {
	out := map[string][]string{}
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], tg.Expr)
		}
	}
	return out
}

// TestDashboard checks the Grafana dashboard: standard schema fields,
// unique ids, a layout on the 24-column grid without overlaps, a Prometheus
// query in every panel, only defined template variables, and only metrics
// and labels of the code.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want all set (schemaVersion >= 30)", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "query" {
			q := variableQuery(v.Query)
			if q == "" {
				t.Errorf("variable %s: no query", v.Name)
			}
			checkPromQL(t, "variable "+v.Name, []string{q})
		}
	}
	if !vars["datasource"] {
		t.Error("no datasource variable: the dashboard would be bound to one data source uid")
	}
	varRef := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

	ids := map[int]string{}
	type cell struct{ x, y int }
	occupied := map[cell]string{}
	for _, p := range d.allPanels() {
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or already used by %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := occupied[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps %q at (%d,%d)", p.Title, other, x, y)
					goto nextPanel
				}
				occupied[cell{x, y}] = p.Title
			}
		}
	nextPanel:
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("panel %q: datasource %s, want the ${datasource} variable", p.Title, p.Datasource)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %s: empty expr", p.Title, tg.RefID)
			}
			for _, mm := range varRef.FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[mm[1]] {
					t.Errorf("panel %q: expr uses $%s, which is not a template variable", p.Title, mm[1])
				}
			}
			checkPromQL(t, fmt.Sprintf("panel %q", p.Title), []string{tg.Expr})
		}
	}

	// What the dashboard promises (deploy/README.md).
	var all []string
	for _, es := range d.exprs() {
		all = append(all, es...)
	}
	refs := parsePromQL(all)
	for _, want := range []string{
		"eddy_records_received_total", "eddy_records_parsed_total", "eddy_records_failed_total",
		"eddy_partition_lag_records", "eddy_partition_watermark_seconds",
		"eddy_window_fired_total", "eddy_work_periods_total",
		"eddy_sink_rows_written_total", "eddy_sink_flush_seconds_bucket",
		"eddy_raft_state", "eddy_raft_leader_changes_total", "eddy_members",
		"eddy_record_latency_seconds_bucket", "eddy_event_time_lag_seconds", "eddy_partition_backpressured",
	} {
		if !refs.metrics[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
	for _, lbl := range []string{"reason", "partition", "table", "eddy_job"} {
		if !refs.grouping[lbl] {
			t.Errorf("no panel breaks down by %s", lbl)
		}
	}
}
