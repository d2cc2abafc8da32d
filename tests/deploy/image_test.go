package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// dockerfile returns the instructions of deploy/Dockerfile as
// (INSTRUCTION, arguments) pairs, continuation lines joined.
func dockerfile(t *testing.T) [][2]string {
	t.Helper()
	var out [][2]string
	var cur string
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, deployPath("Dockerfile"))))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur == "") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		cur += line
		instr, args, _ := strings.Cut(cur, " ")
		out = append(out, [2]string{strings.ToUpper(instr), strings.TrimSpace(args)})
		cur = ""
	}
	return out
}

// dockerfileUser is the numeric uid of the Dockerfile's USER.
func dockerfileUser(t *testing.T) string {
	t.Helper()
	for _, in := range dockerfile(t) {
		if in[0] == "USER" {
			uid, _, _ := strings.Cut(in[1], ":")
			return uid
		}
	}
	t.Fatal("Dockerfile has no USER")
	return ""
}

// TestDockerfile: FROM scratch only, a numeric non-root USER, the /data
// volume, and EXPOSE of every default port of the eddy commands (read from
// their --help, so a changed default breaks this test).
func TestDockerfile(t *testing.T) {
	instrs := dockerfile(t)
	exposed := map[string]bool{}
	var user, volume, entrypoint string
	for _, in := range instrs {
		switch in[0] {
		case "FROM":
			if in[1] != "scratch" && !strings.HasPrefix(in[1], "scratch ") {
				t.Errorf("FROM %s: no image can be pulled; want FROM scratch", in[1])
			}
		case "USER":
			user = in[1]
		case "VOLUME":
			volume = in[1]
		case "ENTRYPOINT":
			entrypoint = in[1]
		case "EXPOSE":
			for _, p := range strings.Fields(in[1]) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				exposed[p] = true
			}
		}
	}
	if !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(user) {
		t.Errorf("USER %q: want a numeric non-root uid[:gid] (scratch has no /etc/passwd)", user)
	}
	if !strings.Contains(volume, "/data") {
		t.Errorf("VOLUME %q: want /data", volume)
	}
	if entrypoint != `["/eddy"]` {
		t.Errorf("ENTRYPOINT %s, want [\"/eddy\"]", entrypoint)
	}
	defaults := []struct {
		cmd  []string
		flag string
		udp  bool
	}{
		{[]string{"node"}, "http-addr", false},
		{[]string{"node"}, "raft-addr", false},
		{[]string{"node"}, "gossip-addr", true},
		{[]string{"dev", "broker"}, "listen", false},
		{[]string{"run"}, "metrics-addr", false},
		{[]string{"dev"}, "metrics-addr", false},
	}
	for _, d := range defaults {
		f, ok := eddyFlags(t, d.cmd...)[d.flag]
		if !ok {
			t.Errorf("eddy %s has no --%s", strings.Join(d.cmd, " "), d.flag)
			continue
		}
		_, port, err := net.SplitHostPort(f.Default)
		if err != nil {
			t.Errorf("eddy %s --%s default %q: %v", strings.Join(d.cmd, " "), d.flag, f.Default, err)
			continue
		}
		if !exposed[port+"/tcp"] {
			t.Errorf("Dockerfile does not EXPOSE %s/tcp, the default of eddy %s --%s", port, strings.Join(d.cmd, " "), d.flag)
		}
		if d.udp && !exposed[port+"/udp"] {
			t.Errorf("Dockerfile does not EXPOSE %s/udp (gossip uses UDP too)", port)
		}
	}
}

// requireDocker skips unless a Docker daemon answers and the Docker tests
// are asked for (EDDY_DOCKER_TESTS=1, or CI=true).
func requireDocker(t *testing.T) {
	t.Helper()
	if os.Getenv("EDDY_DOCKER_TESTS") != "1" && os.Getenv("CI") != "true" {
		t.Skip("Docker tests are off: set EDDY_DOCKER_TESTS=1 (they build the image and run containers, ~3 min)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker daemon: %v: %s", err, out)
	}
}

const testImage = "eddy:dev"

var (
	imageOnce sync.Once
	imageErr  error
)

// buildImage runs deploy/build.sh once: the static binary and eddy:dev.
func buildImage(t *testing.T) {
	t.Helper()
	imageOnce.Do(func() {
		start := time.Now()
		out, err := run(t, 10*time.Minute, repoRoot, []string{"EDDY_IMAGE=" + testImage}, "bash", deployPath("build.sh"))
		if err != nil {
			imageErr = fmt.Errorf("deploy/build.sh: %v\n%s", err, out)
			return
		}
		t.Logf("deploy/build.sh (%s):\n%s", time.Since(start).Round(time.Second), lastLines(out, 5))
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// summaryValue reads "  NAME   N" from an eddy summary.
func summaryValue(t *testing.T, out, name string) int64 {
	t.Helper()
	mm := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + `\s+(\d+)$`).FindStringSubmatch(out)
	if mm == nil {
		t.Fatalf("summary has no %q line:\n%s", name, out)
	}
	n, _ := strconv.ParseInt(mm[1], 10, 64)
	return n
}

// Aberdeen dataset numbers (DESIGN.md, README.md).
const (
	aberdeenInput       = 929022
	aberdeenValid       = 929021
	aberdeenDeadLetters = 1
	aberdeenWorkPeriods = 5541
)

// TestImage builds the image with deploy/build.sh and runs eddy inside the
// empty (scratch) container: --help, and the embedded dataset end to end.
func TestImage(t *testing.T) {
	requireDocker(t)
	buildImage(t)

	out, err := exec.Command("docker", "image", "inspect", testImage, "--format", "{{json .Config}}").Output()
	if err != nil {
		t.Fatalf("docker image inspect: %v", err)
	}
	var cfg struct {
		User         string
		ExposedPorts map[string]any
		Volumes      map[string]any
		Entrypoint   []string
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.User == "" || strings.HasPrefix(cfg.User, "0") || strings.HasPrefix(cfg.User, "root") {
		t.Errorf("image user %q: want non-root", cfg.User)
	}
	if _, ok := cfg.Volumes["/data"]; !ok {
		t.Errorf("image volumes %v: want /data", cfg.Volumes)
	}
	t.Logf("image: user %s, ports %v, volumes %v, entrypoint %v", cfg.User, sortedKeys(cfg.ExposedPorts), sortedKeys(cfg.Volumes), cfg.Entrypoint)

	help, err := run(t, time.Minute, "", nil, "docker", "run", "--rm", testImage, "--help")
	if err != nil || !strings.Contains(help, "eddy dev --bounded") {
		t.Fatalf("docker run %s --help: %v\n%s", testImage, err, help)
	}

	// Time zones other than UTC need the embedded tzdata (scratch has no
	// /usr/share/zoneinfo). No data: only the start-up matters.
	tz, err := run(t, time.Minute, "", nil, "docker", "run", "--rm", testImage,
		"dev", "--bounded", "--quiet", "--metrics-addr", "", "--sink", "discard",
		"--timezone", "Europe/London", "--data", "/dev/null", "--format", "ndjson")
	if err != nil || !strings.Contains(tz, "(ok)") {
		t.Errorf("eddy dev --timezone Europe/London in the container: %v\n%s", err, tz)
	}

	// The embedded dataset end to end, as the non-root user on a read-only
	// root file system (as the Kubernetes manifests run it).
	start := time.Now()
	dev, err := run(t, 3*time.Minute, "", nil, "docker", "run", "--rm", "--read-only", testImage,
		"dev", "--bounded", "--sink", "discard", "--quiet", "--metrics-addr", "")
	if err != nil {
		t.Fatalf("eddy dev --bounded in the container: %v\n%s", err, dev)
	}
	t.Logf("eddy dev --bounded in the container (%s):\n%s", time.Since(start).Round(time.Second), dev)
	if !strings.Contains(dev, "valid + late + dead letters = 929022 (ok)") {
		t.Errorf("summary does not balance (ok):\n%s", dev)
	}
	for name, want := range map[string]int64{"input": aberdeenInput, "dead letters": aberdeenDeadLetters, "work periods": aberdeenWorkPeriods} {
		if got := summaryValue(t, dev, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}
