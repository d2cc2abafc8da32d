package deploy

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/spec"
)

const composeFile = "docker-compose.yml"

func loadCompose(t *testing.T) map[string]any {
	t.Helper()
	docs := yamlDocs(t, deployPath(composeFile))
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", composeFile, len(docs))
	}
	return docs[0]
}

func composeServices(t *testing.T) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for name, svc := range m(t, loadCompose(t)["services"], "services") {
		out[name] = m(t, svc, "service "+name)
	}
	return out
}

// isEddyService: the service runs the eddy image.
func isEddyService(svc map[string]any) bool {
	img, _ := svc["image"].(string)
	return strings.Contains(img, "eddy:") || strings.Contains(img, "EDDY_IMAGE")
}

// composeEddyCommands returns the eddy invocation of every eddy service.
func composeEddyCommands(t *testing.T) map[string]eddyCommand {
	t.Helper()
	out := map[string]eddyCommand{}
	for name, svc := range composeServices(t) {
		if !isEddyService(svc) {
			continue
		}
		out[name] = parseEddyArgs(strs(t, svc["command"], name+".command"))
	}
	return out
}

// healthcheckEddyCommand returns the eddy invocation of a service's
// healthcheck (test: ["CMD", "/eddy", ...]), if any.
func healthcheckEddyCommand(t *testing.T, name string, svc map[string]any) (eddyCommand, bool) {
	hc, ok := svc["healthcheck"]
	if !ok {
		return eddyCommand{}, false
	}
	test := strs(t, m(t, hc, name+".healthcheck")["test"], name+".healthcheck.test")
	if len(test) < 2 || test[0] != "CMD" || test[1] != "/eddy" {
		t.Errorf("%s healthcheck %v: the scratch image has no shell; use [\"CMD\", \"/eddy\", ...]", name, test)
		return eddyCommand{}, false
	}
	return parseEddyArgs(test[2:]), true
}

// TestComposeFile checks the compose stack against the eddy CLI and the
// job spec parser: every flag exists, the services find each other by the
// names they bind and advertise, the nodes form one cluster, and the job
// spec mounted into the job service is valid.
func TestComposeFile(t *testing.T) {
	services := composeServices(t)
	cmds := composeEddyCommands(t)
	for _, want := range []string{"broker", "replay", "job"} {
		if _, ok := cmds[want]; !ok {
			t.Fatalf("compose file has no eddy service %q (services: %v)", want, sortedKeys(services))
		}
	}
	for name, c := range cmds {
		checkFlags(t, "compose service "+name, c)
		if hc, ok := healthcheckEddyCommand(t, name, services[name]); ok {
			checkFlags(t, "compose service "+name+" healthcheck", hc)
		}
	}

	// broker: listens on all interfaces, advertises its service name.
	broker := cmds["broker"]
	if got := strings.Join(broker.Sub, " "); got != "dev broker" {
		t.Fatalf("broker runs eddy %s, want eddy dev broker", got)
	}
	_, brokerPort, err := net.SplitHostPort(broker.flag("listen"))
	if err != nil || !strings.HasPrefix(broker.flag("listen"), "0.0.0.0:") {
		t.Errorf("broker --listen %q: want 0.0.0.0:PORT (other containers connect)", broker.flag("listen"))
	}
	if broker.flag("advertise") != "broker" {
		t.Errorf("broker --advertise %q: want the service name broker", broker.flag("advertise"))
	}
	brokerAddr := "broker:" + brokerPort
	if replay := cmds["replay"]; replay.flag("brokers") != brokerAddr {
		t.Errorf("replay --brokers %q, want %s", replay.flag("brokers"), brokerAddr)
	}

	// job: eddy run --job /jobs/X, X in deploy/jobs, a valid spec against the broker.
	job := cmds["job"]
	if job.Sub[0] != "run" {
		t.Fatalf("job runs eddy %v, want run", job.Sub)
	}
	mounts := map[string]string{} // container path -> host path or volume
	for _, v := range strs(t, services["job"]["volumes"], "job.volumes") {
		parts := strings.Split(v, ":")
		mounts[parts[1]] = parts[0]
	}
	specPath := job.flag("job")
	hostDir, ok := mounts[filepath.Dir(specPath)]
	if !ok {
		t.Fatalf("job --job %s: directory %s is not mounted (volumes %v)", specPath, filepath.Dir(specPath), mounts)
	}
	js := parseJobSpec(t, filepath.Join(deployPath(), hostDir, filepath.Base(specPath)), spec.Run)
	if !slices.Equal(js.Source.Brokers, []string{brokerAddr}) {
		t.Errorf("job spec source.brokers %v, want [%s]", js.Source.Brokers, brokerAddr)
	}
	dbPath, isSQLite := strings.CutPrefix(js.Sink, "sqlite:")
	if !isSQLite {
		t.Errorf("job spec sink %q: want sqlite:PATH on the job's volume", js.Sink)
	} else if _, ok := mounts[filepath.Dir(dbPath)]; !ok {
		t.Errorf("job spec sink %s is not on a volume of the job service (volumes %v)", js.Sink, mounts)
	}
	if addr := job.flag("metrics-addr"); !strings.HasPrefix(addr, "0.0.0.0:") {
		t.Errorf("job --metrics-addr %q: want 0.0.0.0:PORT so Prometheus can scrape it", addr)
	}

	// nodes: one cluster, bootstrap-expect = node count, every address
	// bound and advertised under the service's own name, joins to the
	// others (never only to itself: a node that "joins" itself stops
	// looking for the others).
	var nodes []string
	for name, c := range cmds {
		if c.Sub[0] == "node" {
			nodes = append(nodes, name)
		}
	}
	slices.Sort(nodes)
	if len(nodes) != 3 {
		t.Fatalf("compose has %d eddy node services (%v), want 3", len(nodes), nodes)
	}
	gossip := map[string]string{}
	for _, n := range nodes {
		c := cmds[n]
		if c.flag("id") != n {
			t.Errorf("%s: --id %q, want the service name", n, c.flag("id"))
		}
		if c.flag("bootstrap-expect") != fmt.Sprint(len(nodes)) {
			t.Errorf("%s: --bootstrap-expect %q, want %d", n, c.flag("bootstrap-expect"), len(nodes))
		}
		for _, f := range []string{"http-addr", "raft-addr", "gossip-addr"} {
			host, _, err := net.SplitHostPort(c.flag(f))
			if err != nil || host != n {
				t.Errorf("%s: --%s %q: want %s:PORT (bound and advertised by service name)", n, f, c.flag(f), n)
			}
		}
		gossip[n] = c.flag("gossip-addr")
		if g, ok := services[n]["stop_grace_period"].(string); !ok {
			t.Errorf("%s: no stop_grace_period (docker's default 10 s cuts the partition handover short)", n)
		} else if d, err := time.ParseDuration(g); err != nil || d <= drainTimeout(t, c) {
			t.Errorf("%s: stop_grace_period %q must exceed --drain-timeout %s", n, g, drainTimeout(t, c))
		}
		nets := strs(t, services[n]["networks"], n+".networks")
		if !slices.Equal(nets, []string{"cluster"}) {
			t.Errorf("%s: networks %v, want only the private network cluster", n, nets)
		}
	}
	for _, n := range nodes {
		join := strings.Split(cmds[n].flag("join"), ",")
		var want []string
		for _, o := range nodes {
			if o != n {
				want = append(want, gossip[o])
			}
		}
		slices.Sort(join)
		if !slices.Equal(join, want) {
			t.Errorf("%s: --join %v, want the other nodes' gossip addresses %v", n, join, want)
		}
	}

	// Files mounted from deploy/ exist.
	for name, svc := range services {
		vols, ok := svc["volumes"]
		if !ok {
			continue
		}
		for _, v := range strs(t, vols, name+".volumes") {
			src := strings.Split(v, ":")[0]
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(deployPath(), src)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			}
		}
	}
}

// parseJobSpec parses a job spec with eddy's own parser and validates it
// for mode.
func parseJobSpec(t *testing.T, path string, mode spec.Mode) *spec.Spec {
	t.Helper()
	s, err := spec.Parse(readFile(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if _, err := s.Config(mode); err != nil {
		t.Fatalf("%s (%v mode): %v", path, mode, err)
	}
	return s
}

// TestJobSpecs: every spec under deploy/jobs is valid, *-cluster.yaml
// for eddy nodes, the others for eddy run.
func TestJobSpecs(t *testing.T) {
	files, err := filepath.Glob(deployPath("jobs", "*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("deploy/jobs: %v, %v", files, err)
	}
	for _, f := range files {
		mode := spec.Run
		if strings.HasSuffix(f, "-cluster.yaml") {
			mode = spec.Cluster
		}
		s := parseJobSpec(t, f, mode)
		t.Logf("%s (%v): job %s, sink %s", filepath.Base(f), mode, s.Name, s.Sink)
	}
}

// TestComposeConfig lets docker-compose itself validate the file (no
// daemon needed).
func TestComposeConfig(t *testing.T) {
	bin, args := composeCLI()
	if bin == "" {
		t.Skip("neither docker-compose nor the docker compose plugin is installed")
	}
	for _, profile := range [][]string{nil, {"--profile", "monitoring"}} {
		a := append(append(slices.Clone(args), profile...), "-f", deployPath(composeFile), "config", "-q")
		if out, err := run(t, time.Minute, deployPath(), nil, bin, a...); err != nil {
			t.Errorf("%s %s: %v\n%s", bin, strings.Join(a, " "), err, out)
		}
	}
}

// composeCLI returns the compose command: docker-compose (v1 or v2), or
// docker with the compose plugin.
func composeCLI() (string, []string) {
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("docker"); err == nil {
		if exec.Command(p, "compose", "version").Run() == nil {
			return p, []string{"compose"}
		}
	}
	return "", nil
}
