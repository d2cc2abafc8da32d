package deploy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// kustomizeBuild renders the kustomization in deploy/<dir> as `kubectl
// apply -k` would (kustomize's Go API, default options) and returns the
// objects keyed by "Kind/name".
func kustomizeBuild(t *testing.T, dir string) map[string]map[string]any {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), deployPath(dir))
	if err != nil {
		t.Fatalf("kustomize build deploy/%s: %v", dir, err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build deploy/%s: %v", dir, err)
	}
	objs := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("deploy/%s rendered: %v", dir, err)
		}
		key := fmt.Sprint(d["kind"], "/", path(t, d, "metadata", "name"))
		if _, dup := objs[key]; dup {
			t.Errorf("deploy/%s renders %s twice", dir, key)
		}
		objs[key] = d
	}
	return objs
}

// k8sKustomizations lists the directories under deploy/k8s that hold a
// kustomization.yaml, relative to deploy/.
func k8sKustomizations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(deployPath("k8s"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "kustomization.yaml" {
			rel, _ := filepath.Rel(deployPath(), filepath.Dir(p))
			dirs = append(dirs, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// nodeContainer returns the StatefulSet's pod spec, its eddy container and
// the parsed eddy arguments.
func nodeContainer(t *testing.T, objs map[string]map[string]any) (pod, ctr map[string]any, c eddyCommand) {
	t.Helper()
	sts, ok := objs["StatefulSet/eddy"]
	if !ok {
		t.Fatalf("no StatefulSet/eddy; have %v", sortedKeys(objs))
	}
	pod = m(t, path(t, sts, "spec", "template", "spec"), "pod spec")
	ctr = m(t, l(t, pod["containers"], "containers")[0], "container")
	return pod, ctr, parseEddyArgs(strs(t, ctr["args"], "args"))
}

// podSpecs returns the pod template spec of every workload, by "Kind/name".
func podSpecs(t *testing.T, objs map[string]map[string]any) map[string]map[string]any {
	pods := map[string]map[string]any{}
	for key, o := range objs {
		switch o["kind"] {
		case "StatefulSet", "Deployment", "DaemonSet", "Job":
			pods[key] = m(t, path(t, o, "spec", "template", "spec"), key+" pod spec")
		}
	}
	return pods
}

// containers returns the containers and init containers of a pod spec.
func containers(t *testing.T, pod map[string]any) []map[string]any {
	var out []map[string]any
	for _, field := range []string{"initContainers", "containers"} {
		if v, ok := pod[field]; ok {
			for _, c := range l(t, v, field) {
				out = append(out, m(t, c, field+" entry"))
			}
		}
	}
	return out
}

// quantity parses the Kubernetes quantities the manifests use ("500m",
// "2", "512Mi", "1Gi") into milli-units.
func quantity(t *testing.T, v any) *big.Int {
	t.Helper()
	str := fmt.Sprint(v)
	mm := regexp.MustCompile(`^(\d+)(m|k|M|G|Ki|Mi|Gi|Ti)?$`).FindStringSubmatch(str)
	if mm == nil {
		t.Fatalf("quantity %q: not of the forms 500m, 2, 512Mi, 1Gi", str)
	}
	n, _ := new(big.Int).SetString(mm[1], 10)
	mult := map[string]int64{"m": 1, "": 1000, "k": 1e6, "M": 1e9, "G": 1e12,
		"Ki": 1000 << 10, "Mi": 1000 << 20, "Gi": 1000 << 30, "Ti": 1000 << 40}[mm[2]]
	return n.Mul(n, big.NewInt(mult))
}

// checkResources fails unless every container of every workload has CPU
// and memory requests and limits, each request <= its limit (the API
// server rejects a pod otherwise).
func checkResources(t *testing.T, objs map[string]map[string]any) {
	t.Helper()
	for key, pod := range podSpecs(t, objs) {
		for _, c := range containers(t, pod) {
			where := fmt.Sprintf("%s container %v", key, c["name"])
			res, _ := c["resources"].(map[string]any)
			req, _ := res["requests"].(map[string]any)
			lim, _ := res["limits"].(map[string]any)
			for _, r := range []string{"cpu", "memory"} {
				if req[r] == nil || lim[r] == nil {
					t.Errorf("%s: want requests and limits of %s, have %v", where, r, res)
					continue
				}
				if quantity(t, req[r]).Cmp(quantity(t, lim[r])) > 0 {
					t.Errorf("%s: %s request %v > limit %v", where, r, req[r], lim[r])
				}
			}
		}
	}
}

// secretMount resolves a file path of a container to the Secret volume it
// is on: the Secret's name and the key that becomes that file. ok is false
// when the path is not on a Secret volume.
func secretMount(t *testing.T, pod, ctr map[string]any, file string) (secret, key string, ok bool) {
	t.Helper()
	for _, vm := range l(t, ctr["volumeMounts"], "volumeMounts") {
		mnt := m(t, vm, "volumeMount")
		dir := strings.TrimSuffix(s(t, mnt["mountPath"], "mountPath"), "/") + "/"
		rel, under := strings.CutPrefix(file, dir)
		if !under {
			continue
		}
		for _, v := range l(t, pod["volumes"], "volumes") {
			vol := m(t, v, "volume")
			if vol["name"] != mnt["name"] {
				continue
			}
			sec, isSecret := vol["secret"].(map[string]any)
			if !isSecret {
				return "", "", false
			}
			items, hasItems := sec["items"]
			if !hasItems {
				return s(t, sec["secretName"], "secretName"), rel, true // every key, as a file of its name
			}
			for _, it := range l(t, items, "secret items") {
				item := m(t, it, "secret item")
				if item["path"] == rel {
					return s(t, sec["secretName"], "secretName"), s(t, item["key"], "key"), true
				}
			}
			return "", "", false
		}
	}
	return "", "", false
}

// checkNoLiteralSecrets fails for a secret given as a literal anywhere
// outside a Secret: an env value, a flag value or a DSN with a password
// in a ConfigMap. Secrets themselves may hold only placeholders (CHANGE-ME).
func checkNoLiteralSecrets(t *testing.T, objs map[string]map[string]any) {
	t.Helper()
	secretName := regexp.MustCompile(`(?i)token|password|passwd|secret|gossip.?key|dsn|credential`)
	dsnPassword := regexp.MustCompile(`[\w.-]+:([^\s@:/"'$]+)@tcp\(`)
	for key, pod := range podSpecs(t, objs) {
		for _, c := range containers(t, pod) {
			where := fmt.Sprintf("%s container %v", key, c["name"])
			if env, ok := c["env"]; ok {
				for _, e := range l(t, env, "env") {
					em := m(t, e, "env entry")
					if _, literal := em["value"]; literal && secretName.MatchString(s(t, em["name"], "env name")) {
						t.Errorf("%s: env %v has a literal value; take it from a Secret (valueFrom.secretKeyRef)", where, em["name"])
					}
				}
			}
			if args, ok := c["args"]; ok {
				for name, vals := range parseEddyArgs(strs(t, args, "args")).Flags {
					if secretName.MatchString(name) && !strings.HasSuffix(name, "-file") {
						t.Errorf("%s: --%s=%v on the command line; use the flag's file form on a Secret volume", where, name, vals)
					}
				}
			}
		}
	}
	for key, o := range objs {
		switch o["kind"] {
		case "ConfigMap":
			for k, v := range m(t, o["data"], key+" data") {
				if mm := dsnPassword.FindStringSubmatch(fmt.Sprint(v)); mm != nil {
					t.Errorf("%s %s: a DSN with a literal password; use ${ENV} from a Secret", key, k)
				}
			}
		case "Secret":
			for _, field := range []string{"stringData", "data"} {
				vals, _ := o[field].(map[string]any)
				for k, v := range vals {
					if !strings.Contains(fmt.Sprint(v), "CHANGE-ME") {
						t.Errorf("%s %s.%s is not a placeholder (CHANGE-ME): no real secret in the repository", key, field, k)
					}
				}
			}
		}
	}
}

// TestK8sRenderAll renders every kustomization under deploy/k8s (base,
// monitoring, overlays) with kustomize and makes the base's structural
// checks (TestKubernetesManifests) on each result, so that no patch breaks
// the wiring: flags that `eddy node --help` lists, DNS names, probes,
// volumes, --bootstrap-expect equal to the replicas and a --join of every
// pod. No rendered object may carry a literal secret.
func TestK8sRenderAll(t *testing.T) {
	dirs := k8sKustomizations(t)
	for _, want := range []string{"k8s/base", "k8s/overlays/monitoring", "k8s/overlays/dev", "k8s/overlays/prod"} {
		if !slices.Contains(dirs, want) {
			t.Errorf("no deploy/%s/kustomization.yaml (have %v)", want, dirs)
		}
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			objs := kustomizeBuild(t, dir)
			checkK8sObjects(t, objs)
			checkNoLiteralSecrets(t, objs)
			for key, o := range objs {
				if _, ns := m(t, o["metadata"], key)["namespace"]; ns {
					t.Errorf("%s: hard-coded namespace (apply with kubectl -n)", key)
				}
			}
		})
	}
}

// TestK8sOverlayDev checks deploy/k8s/overlays/dev: one node that
// bootstraps alone (--bootstrap-expect 1, a Raft cluster of one voter),
// no PodDisruptionBudget (it could only block drains), plaintext HTTP
// probes, no TLS, smaller requests than the base.
func TestK8sOverlayDev(t *testing.T) {
	objs := kustomizeBuild(t, "k8s/overlays/dev")
	base := kustomizeBuild(t, "k8s/base")
	if r := path(t, objs["StatefulSet/eddy"], "spec", "replicas"); r != 1 {
		t.Errorf("dev replicas %v, want 1", r)
	}
	_, ctr, c := nodeContainer(t, objs)
	if c.flag("bootstrap-expect") != "1" {
		t.Errorf("dev --bootstrap-expect %q, want 1", c.flag("bootstrap-expect"))
	}
	if len(c.Flags["bootstrap-expect"]) != 1 {
		t.Errorf("dev gives --bootstrap-expect %d times", len(c.Flags["bootstrap-expect"]))
	}
	if j := c.flag("join"); j != "eddy-0.eddy.$(POD_NAMESPACE).svc:8301" {
		t.Errorf("dev --join %q: want only the one pod's name (eddy-1 and eddy-2 do not exist)", j)
	}
	for _, f := range []string{"tls-cert", "tls-key", "tls-ca"} {
		if _, on := c.Flags[f]; on {
			t.Errorf("dev sets --%s: dev is plaintext", f)
		}
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		if sch, ok := m(t, path(t, ctr, probe, "httpGet"), probe)["scheme"]; ok && sch != "HTTP" {
			t.Errorf("dev %s scheme %v without TLS", probe, sch)
		}
	}
	if _, ok := objs["PodDisruptionBudget/eddy"]; ok {
		t.Error("dev renders the PodDisruptionBudget: with one node it only blocks drains")
	}
	checkResources(t, objs)
	basePods := podSpecs(t, base)
	for key, pod := range podSpecs(t, objs) {
		for i, c := range containers(t, pod) {
			bc := containers(t, basePods[key])[i]
			for _, r := range []string{"cpu", "memory"} {
				got := path(t, c, "resources", "requests", r)
				want := path(t, bc, "resources", "requests", r)
				if quantity(t, got).Cmp(quantity(t, want)) >= 0 {
					t.Errorf("dev %s %s request %v, not below the base's %v", key, r, got, want)
				}
			}
		}
	}
}

// TestK8sOverlayProd checks deploy/k8s/overlays/prod as an operator would
// before applying it: 3 voters on 3 machines, a PodDisruptionBudget,
// requests and limits on every container, the API token, the gossip key
// and the TLS files read from Secret volumes (never literals; no Secret
// rendered, so an apply never overwrites the real ones), HTTPS probes, and
// a ServiceMonitor that scrapes the headless Service over HTTPS with the CA
// the nodes use.
func TestK8sOverlayProd(t *testing.T) {
	objs := kustomizeBuild(t, "k8s/overlays/prod")
	sts := objs["StatefulSet/eddy"]
	if r := path(t, sts, "spec", "replicas"); r != 3 {
		t.Errorf("prod replicas %v, want 3", r)
	}
	pod, ctr, c := nodeContainer(t, objs)
	checkFlags(t, "prod StatefulSet/eddy", c)
	if c.flag("bootstrap-expect") != "3" {
		t.Errorf("prod --bootstrap-expect %q, want 3", c.flag("bootstrap-expect"))
	}
	podLabels := path(t, sts, "spec", "template", "metadata", "labels")

	// Availability: the PDB keeps a quorum through drains, one voter per machine.
	pdb, ok := objs["PodDisruptionBudget/eddy"]
	if !ok {
		t.Fatal("prod renders no PodDisruptionBudget/eddy")
	}
	if !labelsMatch(t, path(t, pdb, "spec", "selector", "matchLabels"), podLabels) {
		t.Error("prod PodDisruptionBudget selects no node pod")
	}
	if mu := path(t, pdb, "spec", "maxUnavailable"); mu != 1 {
		t.Errorf("prod PDB maxUnavailable %v, want 1 (2 of 3 voters keep the quorum)", mu)
	}
	anti := m(t, path(t, pod, "affinity", "podAntiAffinity"), "podAntiAffinity")
	terms := l(t, anti["requiredDuringSchedulingIgnoredDuringExecution"], "required anti-affinity")
	spread := false
	for _, term := range terms {
		tm := m(t, term, "anti-affinity term")
		spread = spread || (tm["topologyKey"] == "kubernetes.io/hostname" &&
			labelsMatch(t, path(t, tm, "labelSelector", "matchLabels"), podLabels))
	}
	if !spread {
		t.Errorf("prod required anti-affinity %v: want kubernetes.io/hostname over the node pods", terms)
	}
	if _, soft := anti["preferredDuringSchedulingIgnoredDuringExecution"]; soft {
		t.Error("prod keeps the preferred anti-affinity beside the required one")
	}
	checkResources(t, objs)

	// Secrets: files on Secret volumes, no Secret object in the output.
	for key := range objs {
		if strings.HasPrefix(key, "Secret/") {
			t.Errorf("prod renders %s: apply would overwrite the real one with a placeholder", key)
		}
	}
	need := map[string]string{ // flag → the Secret key it must be
		"api-token-file":  "",
		"gossip-key-file": "",
		"tls-cert":        "tls.crt", // kubernetes.io/tls key names (cert-manager adds ca.crt)
		"tls-key":         "tls.key",
		"tls-ca":          "ca.crt",
	}
	secretOf := map[string]string{}
	for flag, wantKey := range need {
		file := c.flag(flag)
		if file == "" {
			t.Errorf("prod: no --%s", flag)
			continue
		}
		secret, key, ok := secretMount(t, pod, ctr, file)
		if !ok {
			t.Errorf("prod --%s %s is not a file of a Secret volume", flag, file)
			continue
		}
		if wantKey != "" && key != wantKey {
			t.Errorf("prod --%s is key %q of Secret %s, want %q", flag, key, secret, wantKey)
		}
		secretOf[flag] = secret
	}
	if secretOf["tls-cert"] != secretOf["tls-key"] || secretOf["tls-cert"] != secretOf["tls-ca"] {
		t.Errorf("prod TLS files from Secrets %v: want the one kubernetes.io/tls Secret", secretOf)
	}
	for _, e := range []string{"EDDY_TOKEN", "EDDY_GOSSIP_KEY"} {
		if v, ok := ctr["env"]; ok {
			for _, entry := range l(t, v, "env") {
				if em := m(t, entry, "env"); em["name"] == e && em["valueFrom"] == nil {
					t.Errorf("prod env %s is a literal", e)
				}
			}
		}
	}

	// HTTPS: probes and the Prometheus annotations.
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		if sch := path(t, ctr, probe, "httpGet", "scheme"); sch != "HTTPS" {
			t.Errorf("prod %s scheme %v, want HTTPS (the API is HTTPS with --tls-cert)", probe, sch)
		}
	}
	if sch := path(t, sts, "spec", "template", "metadata", "annotations", "prometheus.io/scheme"); sch != "https" {
		t.Errorf("prod prometheus.io/scheme %v, want https", sch)
	}

	// The ServiceMonitor: the headless Service, over HTTPS with the nodes' CA.
	sm, ok := objs["ServiceMonitor/eddy"]
	if !ok {
		t.Fatalf("prod renders no ServiceMonitor/eddy; have %v", sortedKeys(objs))
	}
	sel := path(t, sm, "spec", "selector", "matchLabels")
	var selected []string
	for key, o := range objs {
		if strings.HasPrefix(key, "Service/") && labelsMatch(t, sel, path(t, o, "metadata", "labels")) {
			selected = append(selected, key)
		}
	}
	if len(selected) != 1 || path(t, objs[selected[0]], "spec", "clusterIP") != "None" {
		t.Fatalf("prod ServiceMonitor selects %v, want exactly the headless Service", selected)
	}
	svcPorts := map[any]bool{}
	for _, p := range l(t, path(t, objs[selected[0]], "spec", "ports"), "ports") {
		svcPorts[path(t, p, "name")] = true
	}
	_, caKey, _ := secretMount(t, pod, ctr, c.flag("tls-ca"))
	for _, ep := range l(t, path(t, sm, "spec", "endpoints"), "endpoints") {
		if !svcPorts[path(t, ep, "port")] || path(t, ep, "path") != "/metrics" {
			t.Errorf("prod ServiceMonitor endpoint %v: want a port of %s and /metrics", ep, selected[0])
		}
		if path(t, ep, "scheme") != "https" {
			t.Errorf("prod ServiceMonitor endpoint scheme %v, want https", path(t, ep, "scheme"))
		}
		ca := path(t, ep, "tlsConfig", "ca", "secret")
		if path(t, ca, "name") != secretOf["tls-ca"] || path(t, ca, "key") != caKey {
			t.Errorf("prod ServiceMonitor CA %v, want key %s of Secret %s (the nodes' --tls-ca)", ca, caKey, secretOf["tls-ca"])
		}
		serverName := s(t, path(t, ep, "tlsConfig", "serverName"), "serverName")
		checkDevCertNames(t, serverName)
	}
}

// readmeDevCerts runs the `eddy dev certs --dir DIR --host NAMES` that
// deploy/README.md shows for the prod node certificate, into a temporary
// directory, and returns that directory and NAMES.
func readmeDevCerts(t *testing.T) (dir, hosts string) {
	t.Helper()
	readme := string(readFile(t, deployPath("README.md")))
	mm := regexp.MustCompile(`eddy dev certs --dir \S+ --host (\S+)`).FindStringSubmatch(readme)
	if mm == nil {
		t.Fatal("deploy/README.md shows no `eddy dev certs --dir DIR --host NAMES` for the prod certificate")
	}
	dir, hosts = t.TempDir(), strings.Trim(mm[1], `'"`)
	if out, err := run(t, 30*time.Second, "", nil, eddyBinary(t), "dev", "certs", "--dir", dir, "--host", hosts); err != nil {
		t.Fatalf("eddy dev certs: %v\n%s", err, out)
	}
	return dir, hosts
}

// checkDevCertNames checks that the node certificate deploy/README.md
// tells to make (for namespace eddy) is valid for every name a client
// checks: the pods' names that the nodes dial (--http-addr, --raft-addr),
// the ServiceMonitor's serverName and localhost (port-forward).
func checkDevCertNames(t *testing.T, serverName string) {
	t.Helper()
	dir, hosts := readmeDevCerts(t)
	block, _ := pem.Decode(readFile(t, filepath.Join(dir, "node.pem")))
	if block == nil {
		t.Fatal("eddy dev certs wrote no PEM node.pem")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"eddy-0.eddy.eddy.svc", "eddy-2.eddy.eddy.svc", serverName, "localhost"} {
		if err := cert.VerifyHostname(name); err != nil {
			t.Errorf("the certificate of deploy/README.md (--host %s): %v", hosts, err)
		}
	}
}

// TestK8sProdNodeRuns runs a real `eddy node` with the arguments of the
// prod StatefulSet, fed Secret files made as deploy/README.md says (a hex
// token, a base64 gossip key of 32 random bytes, the README's `eddy dev
// certs`), laid out as the Secret volumes would lay them out. Only what a
// pod gets from Kubernetes is replaced: the addresses (127.0.0.1 and free
// ports instead of the pod's DNS name), the join list and
// --bootstrap-expect 1 (one process), and the mount root (a temporary
// directory). It checks what the kubelet and Prometheus do — the probes
// over HTTPS without a client certificate, /metrics with the CA and
// serverName of the ServiceMonitor — and that a write needs the token.
func TestK8sProdNodeRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an eddy node")
	}
	objs := kustomizeBuild(t, "k8s/overlays/prod")
	pod, ctr, _ := nodeContainer(t, objs)
	root := t.TempDir()
	certs, _ := readmeDevCerts(t)
	token := fmt.Sprintf("%x", sha256.Sum256([]byte(t.Name()+time.Now().String())))
	gossipKey := make([]byte, 32)
	if _, err := rand.Read(gossipKey); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]map[string][]byte{ // what the README's kubectl create secret commands store
		"eddy-node": {"api-token": []byte(token), "gossip-key": []byte(base64.StdEncoding.EncodeToString(gossipKey))},
		"eddy-node-tls": {
			"tls.crt": readFile(t, filepath.Join(certs, "node.pem")),
			"tls.key": readFile(t, filepath.Join(certs, "node-key.pem")),
			"ca.crt":  readFile(t, filepath.Join(certs, "ca.pem")),
		},
	}
	vols := map[string]map[string]any{}
	for _, v := range l(t, pod["volumes"], "volumes") {
		vols[s(t, path(t, v, "name"), "volume name")] = m(t, v, "volume")
	}
	var mountPaths []string
	for _, vm := range l(t, ctr["volumeMounts"], "volumeMounts") {
		mnt := m(t, vm, "volumeMount")
		mp := s(t, mnt["mountPath"], "mountPath")
		mountPaths = append(mountPaths, mp)
		if err := os.MkdirAll(filepath.Join(root, mp), 0o755); err != nil {
			t.Fatal(err)
		}
		sec, ok := vols[s(t, mnt["name"], "name")]["secret"].(map[string]any)
		if !ok {
			continue
		}
		data, ok := secrets[s(t, sec["secretName"], "secretName")]
		if !ok {
			t.Fatalf("volume %v: the README creates no Secret %v", mnt["name"], sec["secretName"])
		}
		for _, it := range l(t, sec["items"], "items") {
			key, file := s(t, path(t, it, "key"), "key"), s(t, path(t, it, "path"), "path")
			if _, ok := data[key]; !ok {
				t.Fatalf("Secret %v has no key %s (the pod would not start)", sec["secretName"], key)
			}
			if err := os.WriteFile(filepath.Join(root, mp, file), data[key], 0o440); err != nil {
				t.Fatal(err)
			}
		}
	}

	httpPort := freePort(t)
	replace := map[string]string{
		"http-addr":        fmt.Sprintf("127.0.0.1:%d", httpPort),
		"raft-addr":        fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"gossip-addr":      fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"bootstrap-expect": "1",
		"id":               "eddy-0",
		"actor-addr":       fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	var args []string
	for _, a := range strs(t, ctr["args"], "args") {
		name, val, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if v, ok := replace[name]; ok {
			a = "--" + name + "=" + v
		} else if name == "join" {
			continue
		}
		for _, mp := range mountPaths {
			if val == mp || strings.HasPrefix(val, mp+"/") {
				a = "--" + name + "=" + filepath.Join(root, val)
			}
		}
		if strings.Contains(a, "$(") {
			t.Fatalf("argument %s still needs the downward API", a)
		}
		args = append(args, a)
	}
	// The pod's --actor-addr is auto (gossip port + 1, free in a pod of
	// its own); on this shared machine that port may be taken.
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--actor-addr") }) {
		args = append(args, "--actor-addr="+replace["actor-addr"])
	}
	startProcess(t, "eddy-node", eddyBinary(t), args...)

	base := fmt.Sprintf("https://127.0.0.1:%d", httpPort)
	kubelet := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{ // the kubelet does not verify probe certificates
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(secrets["eddy-node-tls"]["ca.crt"])
	ep := l(t, path(t, objs["ServiceMonitor/eddy"], "spec", "endpoints"), "endpoints")[0]
	prometheus := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: s(t, path(t, ep, "tlsConfig", "serverName"), "serverName")}}}
	get := func(c *http.Client, url string) error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		p := s(t, path(t, ctr, probe, "httpGet", "path"), probe+" path")
		eventually(t, 30*time.Second, "prod "+probe+" "+p+" over HTTPS", func() error { return get(kubelet, base+p) })
	}
	if err := get(prometheus, base+s(t, path(t, ep, "path"), "path")); err != nil {
		t.Errorf("the ServiceMonitor's scrape (CA of eddy-node-tls, serverName): %v", err)
	}

	// Writes need the token of the Secret.
	ctl := []string{"ctl", "--addr", fmt.Sprintf("https://localhost:%d", httpPort), "--ca", filepath.Join(certs, "ca.pem")}
	if out, err := run(t, 20*time.Second, "", []string{"EDDY_TOKEN="}, eddyBinary(t), append(ctl, "config", "put", "k8s/test", `"x"`)...); err == nil {
		t.Errorf("a write without the token succeeded: %s", out)
	} else if strings.Contains(out, token) {
		t.Error("the error of a refused write shows the token")
	} else if !strings.Contains(out, "401") {
		t.Errorf("a write without the token: want HTTP 401, got %v: %s", err, out)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, 20*time.Second, "", []string{"EDDY_TOKEN="}, eddyBinary(t), append(ctl, "--token-file", tokenFile, "config", "put", "k8s/test", `"x"`)...); err != nil {
		t.Errorf("a write with the Secret's token: %v\n%s", err, out)
	}
}
