#!/usr/bin/env bash
# Build the binary and measure it: size, `--help` start-up (warm and cold page cache), RSS.
#
#   container/measure-binary.sh [OUT_JSON]     (default lab-results/binary.json)
#
# Needs hyperfine (apt-get install hyperfine); the cold runs need root to drop the page cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
json=${1:-$root/lab-results/binary.json}
mkdir -p "$(dirname "$json")"
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
PYTHON=${PYTHON:-$root/.venv/bin/python} "$root/container/build-binary.sh" "$dist" >"$dist/build.log" 2>&1 \
    || { cat "$dist/build.log"; exit 1; }
exe=$dist/prestop/prestop
size=$(du -sb "$dist/prestop" | cut -f1)
hyperfine -N --warmup 3 --runs 30 --export-json "$dist/warm.json" "$exe --help" >/dev/null
cold=null
if [ -w /proc/sys/vm/drop_caches ]; then
    hyperfine -N --runs 10 --prepare 'sh -c "sync; echo 3 > /proc/sys/vm/drop_caches"' \
        --export-json "$dist/cold.json" "$exe --help" >/dev/null
    cold=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"])' "$dist/cold.json")
fi
warm=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"])' "$dist/warm.json")
rss=$(/usr/bin/time -f %M "$exe" --help 2>&1 >/dev/null | tail -1)
python3 - "$json" "$size" "$warm" "$cold" "$rss" <<'PY'
import json, sys
path, size, warm, cold, rss = sys.argv[1:]
result = {
    "bundle_bytes": int(size),
    "help_warm_s": float(warm),
    "help_cold_s": None if cold == "null" else float(cold),
    "help_max_rss_kb": int(rss),
}
with open(path, "w") as f:
    json.dump(result, f, indent=2)
print(f"{'bundle size':<22}{int(size) / 1e6:8.1f} MB")
print(f"{'--help, warm cache':<22}{float(warm) * 1000:8.0f} ms")
if cold != "null":
    print(f"{'--help, cold cache':<22}{float(cold) * 1000:8.0f} ms")
print(f"{'--help, max RSS':<22}{int(rss) / 1024:8.1f} MB")
print(f"wrote {path}")
PY
