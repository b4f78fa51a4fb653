#!/usr/bin/env bash
# Checks the deployment files: Prometheus config, alert rules and their unit tests,
# the Grafana dashboard's queries, the Helm chart (YAML, Chart.yaml fields, values against
# the schema, template actions balanced, values commented; helm lint/template where helm
# exists), the Dockerfile's required lines, that the shell scripts parse, that the
# runtime packages exist, and that every metric and flag they use is in
# deploy/PROCESSES.md.
# A tool deploy/install-deps.sh installs (promtool: Debian's prometheus; python3,
# python3-yaml, python3-jsonschema) is required: its absence is a failure naming the
# package. Only what install-deps.sh does not install (helm, hadolint, a container
# engine) or cannot provide (apt package lists, a promtool with Kubernetes discovery)
# is skipped, and each skip is printed and listed in the summary line.
# Exits non-zero when a check failed or when no check ran at all.
# Usage: check_deploy.sh [REPO_ROOT]   (ctest: deploy_check)
set -uo pipefail
root=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0 skipped=0 missing_tools=0
skipped_names=()

# run NAME COMMAND...: a check passes on exit 0 and fails otherwise (also on 77,
# check_files.py's "a Python module is missing": install-deps.sh installs them).
run() {
  local name=$1; shift
  local out rc
  out=$("$@" 2>&1); rc=$?
  if ((rc == 0)); then
    passed=$((passed + 1)); echo "PASS  $name${out:+: ${out//$'\n'/; }}"
  else
    failed=$((failed + 1)); echo "FAIL  $name"; printf '%s\n' "$out" | sed 's/^/      /'
  fi
}
skip() { skipped=$((skipped + 1)); skipped_names+=("$1"); echo "SKIP  $1: $2"; }
fail() { failed=$((failed + 1)); echo "FAIL  $1: $2"; }
# missing NAME PACKAGE: a tool or module install-deps.sh installs is absent: a
# failure (not a check that ran; the checks that need it do not run).
missing() {
  missing_tools=$((missing_tools + 1)); failed=$((failed + 1))
  echo "FAIL  $1: not installed: install the Debian package $2 (deploy/install-deps.sh installs it)"
}
py() { python3 "$here/check_files.py" "$@"; }

have_python=0 have_yaml=0
if command -v python3 >/dev/null; then
  have_python=1
  if python3 -c 'import yaml' 2>/dev/null; then have_yaml=1; else missing "python3 module yaml" python3-yaml; fi
  python3 -c 'import jsonschema' 2>/dev/null || missing "python3 module jsonschema" python3-jsonschema
else
  missing "python3 (the JSON, YAML, chart, schema, template, values and contract checks)" python3
fi

prom=$root/deploy/prometheus
if command -v promtool >/dev/null; then
  run "promtool check config" promtool check config "$prom/prometheus.yml"
  if ((have_python)); then
    mkdir -p "$tmp/k8s" && cp "$prom/alerts.yml" "$tmp/k8s/"
    if out=$(py k8s-sd-example "$root" "$tmp/k8s/prometheus.yml" 2>&1); then
      k8s_out=$(promtool check config "$tmp/k8s/prometheus.yml" 2>&1)
      if [[ $k8s_out == *"field kubernetes_sd_configs not found"* ]]; then
        skip "promtool check config (kubernetes_sd example)" "not run: this promtool is built without Kubernetes discovery (Debian 12's is), so the commented kubernetes_sd job is not checked"
      else
        run "promtool check config (kubernetes_sd example)" promtool check config "$tmp/k8s/prometheus.yml"
      fi
    else
      fail "promtool check config (kubernetes_sd example)" "could not uncomment the kubernetes_sd job of prometheus.yml: ${out//$'\n'/; }"
    fi
  fi
  run "promtool check rules" promtool check rules "$prom/alerts.yml"
  run "promtool test rules" promtool test rules "$prom/alerts_test.yml"
  if ((have_python)); then
    if out=$(py dashboard-rules "$root" "$tmp/dashboard-rules.yml" 2>&1); then
      run "dashboard queries parse (promtool)" promtool check rules "$tmp/dashboard-rules.yml"
    else
      fail "dashboard queries parse (promtool)" "could not extract the dashboard's queries: ${out//$'\n'/; }"
    fi
  fi
else
  missing "promtool (config, rules, rule tests, dashboard queries)" prometheus
fi

if ((have_python)); then
  run "JSON files parse (python3 -m json.tool)" bash -c '
    n=0; for f in $(find "$1/deploy" "$1/helm" -name "*.json"); do
      python3 -m json.tool "$f" >/dev/null || { echo "$f"; exit 1; }; n=$((n+1)); done; echo "$n files"' _ "$root"
  if ((have_yaml)); then
    run "chart YAML parses" py yaml "$root"
    run "Chart.yaml fields" py chart "$root"
    run "values.yaml and ci/*.yaml match values.schema.json" py schema "$root"
  fi
  run "templates: balanced {{ }} and blocks" py templates "$root"
  run "values.yaml: every key commented" py values-comments "$root"
  run "metrics and flags are in deploy/PROCESSES.md" py contract "$root"
fi

if command -v helm >/dev/null; then
  run "helm lint" helm lint --strict "$root/helm/dgc"
  for v in "$root"/helm/dgc/ci/*-values.yaml; do
    run "helm lint -f ci/$(basename "$v")" helm lint --strict "$root/helm/dgc" -f "$v"
    run "helm template -f ci/$(basename "$v")" bash -c 'helm template t "$1" -f "$2" >/dev/null' _ "$root/helm/dgc" "$v"
  done
else
  skip "helm lint and helm template" "not run: helm is not installed (not a Debian 12 package; deploy/install-deps.sh does not install it), so the templates are not rendered"
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
  skip "runtime packages exist (apt-cache)" "not run: apt-cache has no package lists (run apt-get update)"
fi
if command -v hadolint >/dev/null; then
  run "hadolint" hadolint "$docker"
else
  skip "hadolint" "not run: hadolint is not installed (deploy/install-deps.sh does not install it)"
fi
if command -v docker >/dev/null || command -v podman >/dev/null; then
  skip "image build" "not run here: tests/deploy/image_test.sh builds and runs it with podman (needs Debian's mirror, minutes)"
else
  skip "image build" "not run: no container engine (docker, podman) here; deploy/install-deps.sh does not install one"
fi

ran=$((passed + failed - missing_tools))
summary="deploy checks: $ran run ($passed passed, $((failed - missing_tools)) failed), $missing_tools required tool(s) missing, $skipped skipped"
if ((skipped)); then summary+=" (not run: $(printf '%s; ' "${skipped_names[@]}" | sed 's/; $//'))"; fi
echo "$summary"
if ((ran == 0)); then
  echo "FAIL  no deploy check ran"
  exit 1
fi
((failed == 0))
