#!/usr/bin/env bash
# Smoke test for the lab's Java apps on Eureka: apps-smoke.sh
#
# Builds nothing: needs lab/java/{eureka-server,provider,consumer}/target/*.jar
# (mvn -B -q -f lab/java/<app>/pom.xml package -DskipTests).
# Starts two replicating Eureka peers, two providers and a consumer (eureka profile) on
# free loopback ports, then, with bounded polls and no fixed sleeps:
#   1. waits until the consumer has ok records for both providers;
#   2. sets provider 2 OUT_OF_SERVICE in Eureka (at the peer it did not register with)
#      and waits until the consumer stops routing to it (Eureka fetch + LB cache expire);
#   3. sends provider 2 a 2 s request, POSTs /actuator/shutdown meanwhile, and checks the
#      request still gets 200, the port closes and the process exits 0;
#   4. checks the consumer recorded no failed request at all;
# and kills everything it started. Exit 0 on success.
# Needs java, curl and python3. Env: JAVA (default java), START_TIMEOUT (s, default 300),
# APPS_SMOKE_KEEP=1 keeps the log dir.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
EUREKA_JAR="$HERE/eureka-server/target/eureka-server.jar"
PROVIDER_JAR="$HERE/provider/target/provider.jar"
CONSUMER_JAR="$HERE/consumer/target/consumer.jar"
for jar in "$EUREKA_JAR" "$PROVIDER_JAR" "$CONSUMER_JAR"; do
    [ -f "$jar" ] || { echo "missing $jar: build it first (mvn -B -q -f <module>/pom.xml package -DskipTests)" >&2; exit 2; }
done
JAVA="${JAVA:-java}"
START_TIMEOUT="${START_TIMEOUT:-300}"
LOGS="$(mktemp -d /tmp/apps-smoke.XXXXXX)"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "${APPS_SMOKE_KEEP:-0}" = 1 ]; then echo "kept $LOGS"; else rm -rf "$LOGS"; fi
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$LOGS"/*.log; do echo "--- tail $f" >&2; tail -n 15 "$f" >&2 || true; done
    exit 1
}
# poll SECONDS CMD...: run CMD every 0.25 s until it succeeds or SECONDS pass.
poll() {
    local limit=$1; shift
    local end=$((SECONDS + limit))
    until "$@"; do
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "process $pid exited early"; done
        [ $SECONDS -ge $end ] && return 1
        sleep 0.25
    done
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# Five distinct free loopback ports, held open together while they are picked.
read -r E1 E2 P1 P2 C < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(5):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(*(s.getsockname()[1] for s in socks))
EOF
)
ZONE="http://127.0.0.1:$E1/eureka/,http://127.0.0.1:$E2/eureka/"
JOPTS=(-Xms32m -Xmx160m -XX:+UseSerialGC)
echo "eureka $E1 $E2, providers $P1 $P2, consumer $C, logs $LOGS"

start() {  # start NAME ARGS...: start a JVM in the background, log to $LOGS/NAME.log
    local name=$1; shift
    "$JAVA" "${JOPTS[@]}" "$@" >"$LOGS/$name.log" 2>&1 &
    PIDS+=("$!")
}
T0=$SECONDS
start eureka1 -jar "$EUREKA_JAR" --server.port="$E1" --eureka.client.service-url.defaultZone="http://127.0.0.1:$E2/eureka/" \
    --eureka.server.response-cache-update-interval-ms=1000 --eureka.server.enable-self-preservation=false
start eureka2 -jar "$EUREKA_JAR" --server.port="$E2" --eureka.client.service-url.defaultZone="http://127.0.0.1:$E1/eureka/" \
    --eureka.server.response-cache-update-interval-ms=1000 --eureka.server.enable-self-preservation=false
for port in "$P1" "$P2"; do
    start "provider-$port" -jar "$PROVIDER_JAR" --spring.profiles.active=eureka --server.port="$port" \
        --eureka.client.service-url.defaultZone="$ZONE" --eureka.instance.lease-renewal-interval-in-seconds=5 \
        --eureka.instance.lease-expiration-duration-in-seconds=15
done
start consumer -jar "$CONSUMER_JAR" --spring.profiles.active=eureka --server.port="$C" \
    --eureka.client.service-url.defaultZone="$ZONE" --eureka.client.registry-fetch-interval-seconds=2 \
    --spring.cloud.loadbalancer.cache.ttl=3s --lab.rate=20 --lab.latency-ms=10
PROVIDER2_PID=${PIDS[3]}

stats() { curl -fs -m 2 "http://127.0.0.1:$C/lab/stats"; }
ok_on() { [ "$(stats | json "d['byInstance'].get('127.0.0.1:$1', {}).get('ok', 0)" 2>/dev/null)" -gt 0 ] 2>/dev/null; }
both_ok() { ok_on "$P1" && ok_on "$P2"; }
poll "$START_TIMEOUT" both_ok || fail "consumer has no ok records for both providers after ${START_TIMEOUT}s"
next() { curl -fs -m 5 "http://127.0.0.1:$C/lab/records?after=$1&limit=1000000" | json "d['next']"; }
# Before the providers registered the consumer had no instance to pick (no_instance):
# from here on every request must succeed.
S1=$(next 0)
echo "1. load reaches both providers after $((SECONDS - T0)) s: $(stats | json "d['byInstance']")"

# 2. Out of service at the other peer: Eureka replicates it, the consumer's fetch and
#    its LoadBalancer cache pick it up, and provider 2 gets no new request.
INSTANCE="127.0.0.1:provider:$P2"
CODE=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X PUT \
    "http://127.0.0.1:$E2/eureka/apps/PROVIDER/$INSTANCE/status?value=OUT_OF_SERVICE")
[ "$CODE" = 200 ] || fail "OUT_OF_SERVICE answered $CODE"
T1=$SECONDS
# Routed away once two whole seconds of records (about 40) hold none for provider 2.
drained() {
    local from to
    from=$(next 0); sleep 2; to=$(next "$from")
    [ "$to" -gt "$from" ] || return 1
    [ "$(curl -fs -m 5 "http://127.0.0.1:$C/lab/records?after=$from&limit=1000000" \
        | json "sum(1 for r in d['records'] if r[3] == '127.0.0.1:$P2')")" = 0 ]
}
poll 60 drained || fail "consumer still routes to provider 2 60 s after OUT_OF_SERVICE"
echo "2. consumer stopped routing to provider 2 within $((SECONDS - T1)) s of OUT_OF_SERVICE"

# 3. Graceful shutdown: the in-flight request finishes, then the port closes and the JVM exits 0.
curl -s -m 10 -o "$LOGS/inflight.json" -w '%{http_code}' "http://127.0.0.1:$P2/api/work?ms=2000" >"$LOGS/inflight.code" &
INFLIGHT=$!
# Active requests >= 2: ours plus this metrics call itself.
active() { [ "$(curl -fs -m 2 "http://127.0.0.1:$P2/actuator/metrics/http.server.requests.active" \
    | json "[m['value'] for m in d['measurements'] if m['statistic'] == 'ACTIVE_TASKS'][0] >= 2")" = True ]; }
poll 10 active || fail "in-flight request never seen"
CODE=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$P2/actuator/shutdown")
[ "$CODE" = 200 ] || fail "POST /actuator/shutdown answered $CODE"
wait "$INFLIGHT" || true
[ "$(cat "$LOGS/inflight.code")" = 200 ] || fail "in-flight request got $(cat "$LOGS/inflight.code") during shutdown"
closed() { ! curl -s -m 1 -o /dev/null "http://127.0.0.1:$P2/actuator/health"; }
poll 40 closed || fail "provider 2 port still open 40 s after shutdown"
exited() { ! kill -0 "$PROVIDER2_PID" 2>/dev/null; }
poll 40 exited || fail "provider 2 still running 40 s after shutdown"
RC=0; wait "$PROVIDER2_PID" || RC=$?
[ "$RC" = 0 ] || fail "provider 2 exited $RC"
# Drop it from the list the cleanup kills.
PIDS=("${PIDS[@]:0:3}" "${PIDS[@]:4}")
echo "3. provider 2 shut down gracefully: in-flight request 200 ($(cat "$LOGS/inflight.json")), port closed, exit 0"

# 4. Nothing failed on the consumer's side once both providers were up.
AFTER=$(curl -fs -m 5 "http://127.0.0.1:$C/lab/records?after=$S1&limit=1000000" \
    | json "__import__('collections').Counter((r[3], r[4]) for r in d['records'])")
BAD=$(curl -fs -m 5 "http://127.0.0.1:$C/lab/records?after=$S1&limit=1000000" \
    | json "sum(1 for r in d['records'] if r[4] != 'ok')")
[ "$BAD" = 0 ] || fail "consumer saw failed requests after both providers were up: $AFTER"
echo "4. consumer: every request since both providers were up is ok: $AFTER"
echo "   all records: $(stats | json "d['byOutcome']")"
echo "apps smoke: 1 passed, 0 failed"
