package deploy

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/spec"
)

// k8sObjects loads every manifest listed in deploy/k8s/base/kustomization.yaml,
// keyed by "Kind/name".
func k8sObjects(t *testing.T) map[string]map[string]any {
	t.Helper()
	kust := yamlDocs(t, deployPath("k8s", "base", "kustomization.yaml"))[0]
	listed := strs(t, kust["resources"], "kustomization resources")
	onDisk, _ := filepath.Glob(deployPath("k8s", "base", "*.yaml"))
	for _, f := range onDisk {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(listed, b) {
			t.Errorf("deploy/k8s/base/%s is not listed in kustomization.yaml", b)
		}
	}
	objs := map[string]map[string]any{}
	for _, f := range listed {
		for i, d := range yamlDocs(t, deployPath("k8s", "base", f)) {
			where := fmt.Sprintf("%s document %d", f, i)
			api, _ := d["apiVersion"].(string)
			kind, _ := d["kind"].(string)
			meta, _ := d["metadata"].(map[string]any)
			name, _ := meta["name"].(string)
			if api == "" || kind == "" || name == "" {
				t.Fatalf("%s: apiVersion %q, kind %q, metadata.name %q: all required", where, api, kind, name)
			}
			if _, ns := meta["namespace"]; ns {
				t.Errorf("%s: hard-coded namespace (apply with kubectl -n)", where)
			}
			key := kind + "/" + name
			if _, dup := objs[key]; dup {
				t.Errorf("%s: %s defined twice", where, key)
			}
			objs[key] = d
		}
	}
	return objs
}

// path walks a decoded object: path(t, o, "spec", "template", "spec").
func path(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for i, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: not a mapping", strings.Join(keys[:i], "."))
		}
		if v, ok = mm[k]; !ok {
			t.Fatalf("%s: missing", strings.Join(keys[:i+1], "."))
		}
	}
	return v
}

func labelsMatch(t *testing.T, selector, labels any) bool {
	sel := m(t, selector, "selector")
	lbl := m(t, labels, "labels")
	for k, v := range sel {
		if lbl[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// TestKubernetesManifests checks the manifests as Kubernetes would wire
// them: selectors match pod labels, the StatefulSet's service is headless
// and publishes not-ready addresses, the node flags exist and use the
// stable DNS names of the pods, the probes hit /readyz and /healthz on the
// HTTP port, volumes and config are mounted where the flags point, and the
// job's ConfigMap plus the sink line from the Secret is a valid job spec.
func TestKubernetesManifests(t *testing.T) {
	checkK8sObjects(t, k8sObjects(t))
}

// checkK8sObjects makes the checks of TestKubernetesManifests on a set of
// objects keyed by "Kind/name": the base's files, or an overlay rendered by
// kustomize. Secret/eddy-job-sink may be absent (an overlay that leaves
// the Secret to the user); the job pod must still take its env from it.
func checkK8sObjects(t *testing.T, objs map[string]map[string]any) {
	t.Helper()
	sts := objs["StatefulSet/eddy"]
	svc := objs["Service/eddy"]
	if sts == nil || svc == nil {
		t.Fatalf("want StatefulSet/eddy and Service/eddy; have %v", sortedKeys(objs))
	}

	// Headless service wired to the StatefulSet.
	if path(t, svc, "spec", "clusterIP") != "None" {
		t.Error("Service/eddy must be headless (clusterIP: None): it gives the pods stable DNS names")
	}
	if path(t, svc, "spec", "publishNotReadyAddresses") != true {
		t.Error("Service/eddy must publish not-ready addresses: nodes are ready only after they found each other")
	}
	if path(t, sts, "spec", "serviceName") != "eddy" {
		t.Errorf("StatefulSet serviceName %v, want eddy", path(t, sts, "spec", "serviceName"))
	}
	if path(t, sts, "spec", "podManagementPolicy") != "Parallel" {
		t.Error("StatefulSet podManagementPolicy must be Parallel: with OrderedReady pod 1 waits for pod 0 to be ready, which needs a leader, which needs pod 1")
	}
	podLabels := path(t, sts, "spec", "template", "metadata", "labels")
	if !labelsMatch(t, path(t, sts, "spec", "selector", "matchLabels"), podLabels) {
		t.Error("StatefulSet selector does not match its pod labels")
	}
	for key, o := range objs {
		switch {
		case strings.HasPrefix(key, "Service/"):
			if strings.Contains(key, "eddy") && !strings.HasPrefix(key, "Service/eddy-job") && !labelsMatch(t, path(t, o, "spec", "selector"), podLabels) {
				t.Errorf("%s selects no node pod", key)
			}
		case strings.HasPrefix(key, "PodDisruptionBudget/"):
			if !labelsMatch(t, path(t, o, "spec", "selector", "matchLabels"), podLabels) {
				t.Errorf("%s selects no node pod", key)
			}
		}
	}
	replicas := int(path(t, sts, "spec", "replicas").(int))

	// The node container.
	pod := m(t, path(t, sts, "spec", "template", "spec"), "pod spec")
	ctr := m(t, l(t, pod["containers"], "containers")[0], "container")
	args := strs(t, ctr["args"], "args")
	c := parseEddyArgs(args)
	if c.Sub[0] != "node" {
		t.Fatalf("node container runs eddy %v, want node", c.Sub)
	}
	checkFlags(t, "StatefulSet/eddy", c)
	ports := map[string]int{}
	for _, p := range l(t, ctr["ports"], "ports") {
		pm := m(t, p, "port")
		ports[s(t, pm["name"], "port name")] = pm["containerPort"].(int)
	}
	dnsName := regexp.MustCompile(`^\$\(POD_NAME\)\.eddy\.\$\(POD_NAMESPACE\)\.svc:(\d+)$`)
	for flag, portName := range map[string]string{"http-addr": "http", "raft-addr": "raft", "gossip-addr": "gossip-tcp"} {
		mm := dnsName.FindStringSubmatch(c.flag(flag))
		if mm == nil {
			t.Errorf("--%s %q: want $(POD_NAME).eddy.$(POD_NAMESPACE).svc:PORT, the pod's stable name", flag, c.flag(flag))
			continue
		}
		if fmt.Sprint(ports[portName]) != mm[1] {
			t.Errorf("--%s port %s, but container port %s is %d", flag, mm[1], portName, ports[portName])
		}
	}
	if c.flag("id") != "$(POD_NAME)" {
		t.Errorf("--id %q, want $(POD_NAME) (stable across restarts)", c.flag("id"))
	}
	if c.flag("bootstrap-expect") != fmt.Sprint(replicas) {
		t.Errorf("--bootstrap-expect %q with %d replicas", c.flag("bootstrap-expect"), replicas)
	}
	join := strings.Split(c.flag("join"), ",")
	for i := range replicas {
		want := fmt.Sprintf("eddy-%d.eddy.$(POD_NAMESPACE).svc:%d", i, ports["gossip-tcp"])
		if !slices.Contains(join, want) {
			t.Errorf("--join %v lacks %s", join, want)
		}
	}
	if grace := time.Duration(path(t, pod, "terminationGracePeriodSeconds").(int)) * time.Second; grace <= drainTimeout(t, c) {
		t.Errorf("terminationGracePeriodSeconds %s <= --drain-timeout %s: the kubelet kills a node in the middle of handing its partitions over", grace, drainTimeout(t, c))
	}
	env := map[string]string{}
	for _, e := range l(t, ctr["env"], "env") {
		em := m(t, e, "env")
		env[s(t, em["name"], "env name")] = fmt.Sprint(path(t, em, "valueFrom", "fieldRef", "fieldPath"))
	}
	if env["POD_NAME"] != "metadata.name" || env["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("env %v: want POD_NAME and POD_NAMESPACE from the downward API", env)
	}

	// Probes: the paths the node serves, on its HTTP port.
	httpAPI := string(readFile(t, filepath.Join(repoRoot, "control", "http.go")))
	for probe, want := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		get := m(t, path(t, ctr, probe, "httpGet"), probe)
		if get["path"] != want || get["port"] != "http" {
			t.Errorf("%s: %v, want path %s on port http", probe, get, want)
		}
		if !strings.Contains(httpAPI, `"GET `+want+`"`) {
			t.Errorf("%s: control/http.go serves no GET %s", probe, want)
		}
	}

	// Storage: the data dir is the per-pod volume.
	mounts := map[string]string{}
	for _, vm := range l(t, ctr["volumeMounts"], "volumeMounts") {
		vmm := m(t, vm, "volumeMount")
		mounts[s(t, vmm["mountPath"], "mountPath")] = s(t, vmm["name"], "name")
	}
	vct := m(t, l(t, path(t, sts, "spec", "volumeClaimTemplates"), "volumeClaimTemplates")[0], "claim")
	if claim := path(t, vct, "metadata", "name"); mounts[c.flag("data-dir")] != claim {
		t.Errorf("--data-dir %s is not the volumeClaimTemplate %v (mounts %v)", c.flag("data-dir"), claim, mounts)
	}

	// Security: the image's non-root user; fsGroup makes the volume writable.
	uid := dockerfileUser(t)
	psc := m(t, pod["securityContext"], "pod securityContext")
	if fmt.Sprint(psc["runAsUser"]) != uid || fmt.Sprint(psc["fsGroup"]) != uid || psc["runAsNonRoot"] != true {
		t.Errorf("pod securityContext %v: want runAsNonRoot, runAsUser and fsGroup %s (the Dockerfile USER)", psc, uid)
	}

	// The job: ConfigMap spec + sink from the Secret.
	dep := objs["Deployment/eddy-job"]
	cm := objs["ConfigMap/eddy-job"]
	sec := objs["Secret/eddy-job-sink"]
	if dep == nil || cm == nil {
		t.Fatalf("want Deployment/eddy-job and ConfigMap/eddy-job; have %v", sortedKeys(objs))
	}
	if path(t, dep, "spec", "replicas") != 1 || path(t, dep, "spec", "strategy", "type") != "Recreate" {
		t.Error("Deployment/eddy-job: want replicas 1 and strategy Recreate (two eddy run processes would both process every partition)")
	}
	jpod := m(t, path(t, dep, "spec", "template", "spec"), "job pod spec")
	jctr := m(t, l(t, jpod["containers"], "containers")[0], "job container")
	jc := parseEddyArgs(strs(t, jctr["args"], "job args"))
	checkFlags(t, "Deployment/eddy-job", jc)
	if jc.Sub[0] != "run" {
		t.Fatalf("job container runs eddy %v, want run", jc.Sub)
	}
	dsn := "eddy:CHANGE-ME@tcp(mysql.mysql.svc:3306)/eddy" // what the user's Secret holds
	if sec != nil {
		var ok bool
		if dsn, ok = m(t, sec["stringData"], "secret stringData")["EDDY_MYSQL_DSN"].(string); !ok {
			t.Fatal("Secret/eddy-job-sink has no stringData.EDDY_MYSQL_DSN")
		}
	}
	if _, has := jpod["initContainers"]; has {
		t.Error("the job pod has an init container: eddy expands ${EDDY_MYSQL_DSN} in the spec itself")
	}
	fromSecret := false
	for _, e := range l(t, jctr["envFrom"], "job container envFrom") {
		if path(t, m(t, e, "envFrom entry"), "secretRef", "name") == "eddy-job-sink" {
			fromSecret = true
		}
	}
	if !fromSecret {
		t.Error("the job container does not take its env from Secret/eddy-job-sink")
	}
	for key, text := range m(t, cm["data"], "configmap data") {
		// What the container reads: the spec as is, ${EDDY_MYSQL_DSN} from the Secret.
		if !strings.Contains(s(t, text, key), `sink: "mysql:${EDDY_MYSQL_DSN}"`) {
			t.Errorf("ConfigMap %s: want the sink \"mysql:${EDDY_MYSQL_DSN}\"", key)
		}
		_, _, err := spec.Load([]byte(s(t, text, key)), spec.Options{Lookup: func(name string) (string, bool) {
			if name == "EDDY_MYSQL_DSN" {
				return dsn, true
			}
			return "", false
		}})
		if err != nil {
			t.Errorf("ConfigMap %s with the Secret's DSN: %v", key, err)
		}
		doc := strings.ReplaceAll(s(t, text, key), "${EDDY_MYSQL_DSN}", dsn)
		f := filepath.Join(t.TempDir(), key)
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		sp := parseJobSpec(t, f, spec.Run)
		for _, b := range sp.Source.Brokers {
			if _, _, err := net.SplitHostPort(b); err != nil {
				t.Errorf("ConfigMap %s: broker %q: %v", key, b, err)
			}
		}
		// File checkpoints must outlive the pod: on a PersistentVolumeClaim.
		if dir, ok := strings.CutPrefix(sp.Checkpoint.Storage, "file://"); ok {
			if !onPVC(t, jpod, jctr, dir) {
				t.Errorf("ConfigMap %s: checkpoint.storage %s is not on a PersistentVolumeClaim of the job pod", key, sp.Checkpoint.Storage)
			}
			if _, hasClaim := objs["PersistentVolumeClaim/eddy-job-data"]; !hasClaim {
				t.Error("no PersistentVolumeClaim/eddy-job-data")
			}
			jsc := m(t, jpod["securityContext"], "job pod securityContext")
			if fmt.Sprint(jsc["fsGroup"]) != uid {
				t.Errorf("job pod fsGroup %v, want %s: the checkpoint volume must be writable by the eddy user", jsc["fsGroup"], uid)
			}
		} else if sp.Checkpoint.Storage == "" {
			t.Errorf("ConfigMap %s: no checkpoint.storage: a restarted job pod would reprocess from start_offset", key)
		}
	}
	if fmt.Sprint(path(t, dep, "spec", "template", "metadata", "annotations", "prometheus.io/port")) != portOf(t, jc.flag("metrics-addr")) {
		t.Errorf("job prometheus.io/port annotation does not match --metrics-addr %s", jc.flag("metrics-addr"))
	}
}

func portOf(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("address %q: %v", addr, err)
	}
	return p
}

// onPVC reports whether dir of the container is on a volume backed by a
// PersistentVolumeClaim.
func onPVC(t *testing.T, pod, ctr map[string]any, dir string) bool {
	vols := map[string]map[string]any{}
	for _, v := range l(t, pod["volumes"], "volumes") {
		vm := m(t, v, "volume")
		vols[s(t, vm["name"], "volume name")] = vm
	}
	for _, vm := range l(t, ctr["volumeMounts"], "volumeMounts") {
		mnt := m(t, vm, "volumeMount")
		p := s(t, mnt["mountPath"], "mountPath")
		if dir == p || strings.HasPrefix(dir, strings.TrimSuffix(p, "/")+"/") {
			_, ok := vols[s(t, mnt["name"], "name")]["persistentVolumeClaim"]
			return ok
		}
	}
	return false
}

// TestServiceMonitor checks deploy/k8s/overlays/monitoring: it builds on the base,
// and its ServiceMonitor selects exactly one Service of the base — the
// headless one, so every node pod is scraped once — on a port that Service
// names, at /metrics (where eddy serves Prometheus metrics).
func TestServiceMonitor(t *testing.T) {
	kust := yamlDocs(t, deployPath("k8s", "overlays", "monitoring", "kustomization.yaml"))[0]
	res := fmt.Sprint(kust["resources"])
	if !strings.Contains(res, "../../base") || !strings.Contains(res, "servicemonitor.yaml") {
		t.Fatalf("monitoring/kustomization.yaml resources %s: want the base (../../base) and servicemonitor.yaml", res)
	}
	sm := yamlDocs(t, deployPath("k8s", "overlays", "monitoring", "servicemonitor.yaml"))[0]
	if sm["kind"] != "ServiceMonitor" || sm["apiVersion"] != "monitoring.coreos.com/v1" {
		t.Fatalf("servicemonitor.yaml: %v %v, want monitoring.coreos.com/v1 ServiceMonitor", sm["apiVersion"], sm["kind"])
	}
	sel := path(t, sm, "spec", "selector", "matchLabels")
	var selected []map[string]any
	for key, o := range k8sObjects(t) {
		if strings.HasPrefix(key, "Service/") && labelsMatch(t, sel, path(t, o, "metadata", "labels")) {
			selected = append(selected, o)
		}
	}
	if len(selected) != 1 || path(t, selected[0], "spec", "clusterIP") != "None" {
		t.Fatalf("the ServiceMonitor selects %d Services, want exactly the headless one", len(selected))
	}
	eps, _ := path(t, sm, "spec", "endpoints").([]any)
	if len(eps) == 0 {
		t.Fatal("ServiceMonitor has no endpoints")
	}
	for _, ep := range eps {
		port, p := path(t, ep, "port"), path(t, ep, "path")
		found := false
		for _, sp := range path(t, selected[0], "spec", "ports").([]any) {
			found = found || path(t, sp, "name") == port
		}
		if !found || p != "/metrics" {
			t.Errorf("endpoint port %v path %v: want a port the Service names and /metrics", port, p)
		}
	}
}
