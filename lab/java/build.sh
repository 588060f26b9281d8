#!/usr/bin/env bash
# Build the Java lab (real Nacos 2.x and 3.x servers, a Eureka server, the Spring Cloud provider
# and consumer) into lab/java/<module>/target/<module>.jar. Dependencies come from Maven Central
# and are cached in ~/.m2; a module whose jar is newer than its sources is not rebuilt.
#
#   lab/java/build.sh [--force]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
modules="nacos-2x nacos-3x eureka-server provider consumer"

missing=""
command -v java >/dev/null 2>&1 || missing="$missing java (a JDK 17: apt-get install openjdk-17-jdk-headless)"
command -v mvn >/dev/null 2>&1 || missing="$missing mvn (apt-get install maven)"
if [ -n "$missing" ]; then
    echo "lab/java/build.sh: cannot build the Java lab, missing:$missing" >&2
    exit 2
fi

stale=""
for m in $modules; do
    jar="$here/$m/target/$m.jar"
    if [ "${1:-}" = "--force" ] || [ ! -f "$jar" ] \
        || [ -n "$(find "$here/$m/pom.xml" "$here/$m/src" -newer "$jar" -print -quit)" ]; then
        stale="$stale,$m"
    fi
done
if [ -z "$stale" ]; then
    echo "java lab: up to date ($modules)"
    exit 0
fi
echo "java lab: building ${stale#,} (the first build downloads from Maven Central: minutes)"
# -T 1: two cores are better spent on one javac at a time than on swapping between modules.
mvn -B -q -T 1 -f "$here/pom.xml" -pl "${stale#,}" package -DskipTests
for m in $modules; do
    [ -f "$here/$m/target/$m.jar" ] || { echo "java lab: $m.jar was not built" >&2; exit 1; }
done
echo "java lab: built ${stale#,}"
