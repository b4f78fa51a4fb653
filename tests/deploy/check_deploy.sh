#!/usr/bin/env bash
# Checks the deployment files: Prometheus config, alert rules and their unit tests,
# the Grafana dashboard, the Helm chart (YAML, schema, templates, helm lint where helm
# exists), the Dockerfile and install script, and that every metric and flag they use is
# in deploy/PROCESSES.md. A check whose tool is absent is skipped with a message.
# Usage: check_deploy.sh [REPO_ROOT]   (ctest: deploy_check)
set -uo pipefail
root=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0 skipped=0

# run NAME COMMAND...: a check passes on exit 0, is skipped on 77, fails otherwise.
run() {
  local name=$1; shift
  local out rc
  out=$("$@" 2>&1); rc=$?
  if ((rc == 0)); then
    passed=$((passed + 1)); echo "PASS  $name${out:+: ${out//$'\n'/; }}"
  elif ((rc == 77)); then
    skipped=$((skipped + 1)); echo "SKIP  $name: ${out//$'\n'/; }"
  else
    failed=$((failed + 1)); echo "FAIL  $name"; printf '%s\n' "$out" | sed 's/^/      /'
  fi
}
skip() { skipped=$((skipped + 1)); echo "SKIP  $1: $2"; }
py() { python3 "$here/check_files.py" "$@"; }

prom=$root/deploy/prometheus
if command -v promtool >/dev/null; then
  run "promtool check config" promtool check config "$prom/prometheus.yml"
  mkdir -p "$tmp/k8s" && cp "$prom/alerts.yml" "$tmp/k8s/"
  if command -v python3 >/dev/null && py k8s-sd-example "$root" "$tmp/k8s/prometheus.yml"; then
    k8s_out=$(promtool check config "$tmp/k8s/prometheus.yml" 2>&1)
    if [[ $k8s_out == *"field kubernetes_sd_configs not found"* ]]; then
      skip "promtool check config (kubernetes_sd example)" "this promtool is built without Kubernetes discovery (Debian's is)"
    else
      run "promtool check config (kubernetes_sd example)" promtool check config "$tmp/k8s/prometheus.yml"
    fi
  fi
  run "promtool check rules" promtool check rules "$prom/alerts.yml"
  run "promtool test rules" promtool test rules "$prom/alerts_test.yml"
  if command -v python3 >/dev/null && py dashboard-rules "$root" "$tmp/dashboard-rules.yml" >/dev/null; then
    run "dashboard queries parse (promtool)" promtool check rules "$tmp/dashboard-rules.yml"
  else
    run "dashboard queries parse (promtool)" false
  fi
else
  skip "promtool checks" "promtool not installed (Debian: prometheus; deploy/install-deps.sh installs it)"
fi

if command -v python3 >/dev/null; then
  run "JSON files parse (python3 -m json.tool)" bash -c '
    n=0; for f in $(find "$1/deploy" "$1/helm" -name "*.json"); do
      python3 -m json.tool "$f" >/dev/null || { echo "$f"; exit 1; }; n=$((n+1)); done; echo "$n files"' _ "$root"
  run "chart YAML parses" py yaml "$root"
  run "Chart.yaml fields" py chart "$root"
  run "values.yaml and ci/*.yaml match values.schema.json" py schema "$root"
  run "templates: balanced {{ }} and blocks" py templates "$root"
  run "values.yaml: every key commented" py values-comments "$root"
  run "metrics and flags are in deploy/PROCESSES.md" py contract "$root"
else
  skip "file checks" "python3 not installed"
fi

if command -v helm >/dev/null; then
  run "helm lint" helm lint --strict "$root/helm/dgc"
  for v in "$root"/helm/dgc/ci/*-values.yaml; do
    run "helm lint -f ci/$(basename "$v")" helm lint --strict "$root/helm/dgc" -f "$v"
    run "helm template -f ci/$(basename "$v")" bash -c 'helm template t "$1" -f "$2" >/dev/null' _ "$root/helm/dgc" "$v"
  done
else
  skip "helm lint" "helm is not installed on this machine and is not a Debian 12 package"
fi

deps=$root/deploy/install-deps.sh
docker=$root/deploy/docker/Dockerfile
run "shell scripts parse (bash -n)" bash -c 'for f in "$@"; do bash -n "$f" || exit 1; done; echo "$# scripts"' _ \
  "$deps" "$root"/deploy/*.sh "$here"/*.sh
run "Dockerfile: FROM debian:12, install-deps.sh --runtime, non-root, HEALTHCHECK" bash -c '
  f=$1
  [[ $(grep -c "^FROM debian:12" "$f") -ge 2 ]] || { echo "both stages FROM debian:12"; exit 1; }
  grep -q "install-deps.sh --runtime" "$f" || { echo "runtime stage must use install-deps.sh --runtime"; exit 1; }
  grep -Eq "^USER [1-9]" "$f" || { echo "no non-root USER"; exit 1; }
  grep -q "^HEALTHCHECK" "$f" || { echo "no HEALTHCHECK"; exit 1; }' _ "$docker"
if command -v apt-cache >/dev/null && [[ $(apt-cache policy libc6 2>/dev/null) == *"Candidate: "[0-9]* ]]; then
  run "runtime packages exist (apt-cache)" bash -c '
    n=0; for p in $(bash "$1" --runtime --print); do
      apt-cache show "$p" >/dev/null 2>&1 || { echo "no Debian package $p"; exit 1; }; n=$((n+1)); done
    echo "$n packages"' _ "$deps"
else
  skip "runtime packages exist" "apt-cache has no package lists (run apt-get update)"
fi
if command -v hadolint >/dev/null; then
  run "hadolint" hadolint "$docker"
else
  skip "hadolint" "not installed"
fi
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  skip "docker build" "an engine is reachable, but building the image takes too long for this check: docker build -f deploy/docker/Dockerfile ."
else
  skip "docker build" "no container engine here"
fi

echo "deploy checks: $passed passed, $failed failed, $skipped skipped"
((failed == 0))
