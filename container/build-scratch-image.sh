#!/usr/bin/env bash
# Build the FROM-scratch agent image with buildah (vfs storage, chroot isolation: no daemon,
# no root-only kernel features) from a one-folder bundle, and smoke-test the init-copy pattern.
#
#   container/build-scratch-image.sh BUNDLE_DIR [OCI_ARCHIVE]
#
# BUNDLE_DIR is build-binary.sh's OUT/prestop. The image gets the bundle plus the glibc files
# the bundle loads (docs/packaging.md#libraries-the-bundle-loads: libpython needs libm, librt, libutil
# besides what the bootloader links; the bootloader itself links libz). Then, as kubelet would: the agent image installs itself
# into a shared folder, and an "app" image with glibc but no Python runs the copy.
set -euo pipefail
bundle=$(cd "$1" && pwd)
archive=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
root="--root $work/storage --runroot $work/run"
cleanup() { buildah $root rm --all >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

glibc_files() {
    local dir
    dir=$(dirname "$(ldconfig -p | awk '/libc.so.6 .*x86-64/ {print $NF; exit}')")
    echo /lib64/ld-linux-x86-64.so.2
    for lib in libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libutil.so.1 libz.so.1; do
        echo "$dir/$lib"
    done
}

mkdir -p "$work/agent/rootfs/usr/lib/prestop-agent" "$work/agent/rootfs/opt/prestop" \
    "$work/app/rootfs/opt/prestop" "$work/shared"
cp -a "$bundle/." "$work/agent/rootfs/usr/lib/prestop-agent/"
for f in $(glibc_files); do
    for image in agent app; do
        mkdir -p "$work/$image/rootfs$(dirname "$f")"
        cp -L "$f" "$work/$image/rootfs$f"
    done
done
cp "$here/Containerfile.scratch" "$work/agent/Containerfile"
printf 'FROM scratch\nCOPY rootfs/ /\n' > "$work/app/Containerfile"

buildah $root bud --quiet --layers=false -t localhost/prestop-agent:dev -f "$work/agent/Containerfile" "$work/agent" >/dev/null
buildah $root bud --quiet --layers=false -t localhost/jre-without-python:dev -f "$work/app/Containerfile" "$work/app" >/dev/null
buildah $root images --format '{{.Name}}:{{.Tag}} {{.Size}}'

agent=$(buildah $root from localhost/prestop-agent:dev)
app=$(buildah $root from localhost/jre-without-python:dev)
chmod 0777 "$work/shared"
# The init container: the image's own entrypoint and default command, into the "emptyDir".
buildah $root run --user 65532:65532 -v "$work/shared:/opt/prestop" "$agent" -- \
    /usr/lib/prestop-agent/prestop install /opt/prestop
# The app container, which has no Python at all, runs the installed copy.
buildah $root run -v "$work/shared:/opt/prestop:ro" "$app" -- /opt/prestop/prestop --version
buildah $root run -v "$work/shared:/opt/prestop:ro" \
    --env POD_IP=10.0.0.7 --env SPRING_APPLICATION_NAME=orders --env NACOS_SERVER_ADDR=nacos:8848 \
    --env PRESTOP_LOG_TO_PID1=false "$app" -- /opt/prestop/prestop drain --dry-run --log-format json
if [ -n "$archive" ]; then
    buildah $root push --quiet localhost/prestop-agent:dev "oci-archive:$archive:prestop-agent:dev"
fi
echo "SCRATCH_IMAGE_OK"
