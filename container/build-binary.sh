#!/usr/bin/env bash
# Build the standalone binary: a stripped PyInstaller one-folder bundle, OUT/prestop/prestop.
#
#   container/build-binary.sh [OUT]        (default OUT: dist/)
#
# One-folder, not one-file: it starts faster (nothing to unpack) and needs no writable /tmp,
# so it works with readOnlyRootFilesystem (docs/packaging.md#one-folder-vs-one-file).
# The bundle carries libpython but not glibc: it runs on glibc as new as the build machine's,
# which is why the image build does this inside an old-glibc builder (Dockerfile.agent).
# The lab is its own distribution and never part of it. Left out too:
# httpx's own command line, which would pull in pygments (1.8 MB).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
out=${1:-$root/dist}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m PyInstaller --onedir --strip --noconfirm --clean --log-level WARN \
    --name prestop --distpath "$out" --workpath "$work/build" --specpath "$work" \
    --paths "$root" \
    --exclude-module tkinter --exclude-module pydoc \
    --exclude-module httpx._main --exclude-module pygments --exclude-module rich \
    "$root/agent/__main__.py"
"$out/prestop/prestop" --version
