// Package deploy tests the deployment files in deploy/: the scratch image,
// the docker-compose stack, the Prometheus configuration and alert rules,
// the Grafana dashboard and the Kubernetes manifests.
//
// The suite has three tiers:
//
//   - Static checks, always run: every file parses; every metric, label and
//     flag the files use exists in the code (metric names and labels are read
//     from the Go sources, flags from `eddy <command> --help` of a fresh
//     build), so renaming a metric or a flag breaks a test here; the job
//     specs parse with the real spec parser. Every kustomization under
//     deploy/k8s (base and overlays) is rendered with the kustomize Go API,
//     as `kubectl apply -k` would, and checked; an `eddy node` runs with the
//     prod overlay's arguments and Secret files. With promtool on PATH (Debian:
//     apt-get install prometheus) also `promtool check config`, `promtool
//     check rules` and the alert unit tests deploy/prometheus/alerts_test.yml.
//
//   - Live metrics, with the prometheus binary on PATH: a real Prometheus
//     scrapes a real `eddy node` and `eddy run` (with checkpoints, fed by
//     `eddy dev broker` and `eddy replay`), loads the alert rules and
//     answers every dashboard query with data.
//
//   - Docker, with a Docker daemon and EDDY_DOCKER_TESTS=1 or CI=true:
//     deploy/build.sh builds the image, the embedded dataset runs end to end
//     in the scratch container, and the compose stack (broker, replay, three
//     nodes, job) comes up and produces the expected tables
//     (skip the stack with -short).
//
//     go test ./tests/deploy/
//     EDDY_DOCKER_TESTS=1 go test ./tests/deploy/ -v -timeout 10m
package deploy
