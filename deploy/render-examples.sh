#!/usr/bin/env bash
# Render examples/NAME.yaml from the chart, one per examples/values/NAME.yaml:
#
#   deploy/render-examples.sh [OUT_DIR]        (default: examples/)
#
# HELM names the helm binary (default: helm on PATH, else .ci/system-deps's in $(go env GOPATH)/bin). tests/deploy/test_chart.py renders into a
# temporary directory and checks that the committed files are exactly what this writes.
# --kube-version is explicit: a go-installed helm would otherwise assume Kubernetes 1.20,
# which the chart refuses (it needs >= 1.25).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
helm=${HELM:-$(command -v helm || echo "$(go env GOPATH 2>/dev/null)/bin/helm")}
[ -x "$helm" ] || { echo "helm not found: run sh .ci/system-deps (go install helm.sh/helm/v3/cmd/helm)" >&2; exit 1; }
out=${1:-$root/examples}
kube=1.37.0
for values in "$root"/examples/values/*.yaml; do
    name=$(basename "$values")
    {
        echo "# Rendered from the chart; do not edit: change deploy/helm/prestop-agent or"
        echo "# examples/values/$name, then run deploy/render-examples.sh."
        echo "#   helm template orders deploy/helm/prestop-agent --kube-version $kube -f examples/values/$name"
        "$helm" template orders "$root/deploy/helm/prestop-agent" --kube-version "$kube" -f "$values"
    } >"$out/$name.tmp"
    mv "$out/$name.tmp" "$out/$name"
done
