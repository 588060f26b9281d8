#!/usr/bin/env bash
# Smoke test for the lab Nacos servers: nacos-smoke.sh 2x|3x
#
# Starts lab/java/nacos-<V>/target/nacos-<V>.jar (build it first) on free loopback ports in a temp
# nacos.home with auth on, waits for it (bounded polls, no fixed sleeps), logs in, registers an instance
# with weight 3 and metadata, reads it back, disables it, checks that weight and metadata were kept,
# then kills the server. Exit 0 on success. Needs java, curl and python3.
# Env: JAVA (default java), NACOS_SMOKE_KEEP=1 keeps the temp dir, START_TIMEOUT (s, default 180).
set -euo pipefail

V="${1:-}"
case "$V" in 2x|3x) ;; *) echo "usage: $0 2x|3x" >&2; exit 2 ;; esac
HERE="$(cd "$(dirname "$0")" && pwd)"
JAR="$HERE/nacos-$V/target/nacos-$V.jar"
[ -f "$JAR" ] || { echo "missing $JAR: mvn -B -q -f lab/java/nacos-$V/pom.xml package -DskipTests" >&2; exit 2; }
JAVA="${JAVA:-java}"
START_TIMEOUT="${START_TIMEOUT:-180}"

# A main port P whose gRPC ports (P+1000, P+1001) and Raft port (P-1000) are free too, and a console port.
read -r PORT CONSOLE_PORT < <(python3 - <<'EOF'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
ports = []
while len(ports) < 2:
    p = random.randint(20000, 39000)
    if all(free(x) for x in (p, p - 1000, p + 1000, p + 1001)) and all(abs(p - q) > 1100 for q in ports):
        ports.append(p)
print(*ports)
EOF
)
HOME_DIR="$(mktemp -d /tmp/nacos-smoke-$V.XXXXXX)"
SECRET="$(python3 -c 'import base64,os;print(base64.b64encode(os.urandom(48)).decode())')"
PASS="smoke-$RANDOM$RANDOM"
BASE="http://127.0.0.1:$PORT/nacos"
PID=""

cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PID" 2>/dev/null || true
    fi
    if [ "${NACOS_SMOKE_KEEP:-0}" = 1 ]; then echo "kept $HOME_DIR"; else rm -rf "$HOME_DIR"; fi
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; echo "--- last server output:" >&2; tail -n 40 "$HOME_DIR/stdout.log" >&2 || true; exit 1; }
# poll SECONDS CMD...: run CMD every 0.25 s until it succeeds or SECONDS pass.
poll() {
    local limit=$1; shift
    local end=$((SECONDS + limit))
    until "$@"; do
        [ -n "$PID" ] && ! kill -0 "$PID" 2>/dev/null && fail "server exited"
        [ $SECONDS -ge $end ] && return 1
        sleep 0.25
    done
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

COMMON=(-Xms128m -Xmx384m -Dnacos.home="$HOME_DIR" -Dnacos.standalone=true
        -Dnacos.inetutils.ip-address=127.0.0.1)
ARGS=(--server.address=127.0.0.1 --nacos.core.auth.enabled=true
      --nacos.core.auth.plugin.nacos.token.secret.key="$SECRET"
      --nacos.core.auth.server.identity.key=prestop-lab --nacos.core.auth.server.identity.value=prestop-lab-secret)
if [ "$V" = 2x ]; then
    CMD=("$JAVA" "${COMMON[@]}" -jar "$JAR" --server.port="$PORT" "${ARGS[@]}")
    STATE="$BASE/v1/console/server/state"
else
    CMD=("$JAVA" "${COMMON[@]}" -Dnacos.remote.grpc.listen.ip=127.0.0.1 -jar "$JAR"
         --nacos.server.main.port="$PORT" --nacos.console.port="$CONSOLE_PORT" "${ARGS[@]}")
    STATE="$BASE/v3/admin/core/state"
fi

echo "starting nacos-$V: main port $PORT (gRPC $((PORT + 1000))/$((PORT + 1001))), home $HOME_DIR"
T0=$(date +%s.%N)
(cd "$HOME_DIR" && exec "${CMD[@]}" >"$HOME_DIR/stdout.log" 2>&1) &
PID=$!

up() { curl -fs -m 2 -o "$HOME_DIR/state.json" "$STATE"; }
poll "$START_TIMEOUT" up || fail "no answer from $STATE within ${START_TIMEOUT}s"
T1=$(date +%s.%N)
VERSION=$(json 'd.get("data", d)["version"]' <"$HOME_DIR/state.json")
echo "up after $(python3 -c "print(round($T1-$T0,1))") s, version $VERSION, RSS $(ps -o rss= -p "$PID" | tr -d ' ') KiB"

if [ "$V" = 2x ]; then
    PASS=nacos   # 2.x ships user nacos/nacos in its Derby schema
else
    # 3.x has no default password: the admin is created once, on the main port (the console has it too).
    R=$(curl -fs -m 5 -X POST "$BASE/v3/auth/user/admin" --data-urlencode "password=$PASS") || fail "admin init"
    [ "$(echo "$R" | json 'd["code"]')" = 0 ] || fail "admin init: $R"
fi
# The auth plugin caches users and refreshes the cache on a timer (first load ~5 s after start in 2.x,
# every 15 s in 3.x), so a fresh server or a fresh user answers 403 "user not found" for a while.
login() { curl -fs -m 5 -X POST "$BASE/v1/auth/users/login" --data-urlencode username=nacos \
    --data-urlencode "password=$PASS" -o "$HOME_DIR/login.json"; }
poll 40 login || fail "login"
TOKEN=$(json 'd["accessToken"]' <"$HOME_DIR/login.json")
echo "login ok"
H=(-H "accessToken: $TOKEN")
SVC="smoke-svc"; IP=10.255.0.7; IPORT=8080

# Without a token the naming API must refuse.
CODE=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$BASE/v1/ns/instance/list?serviceName=$SVC")
[ "$CODE" = 403 ] || fail "auth is not enforced (got $CODE without a token)"

if [ "$V" = 2x ]; then
    REG="$BASE/v2/ns/instance"
    R=$(curl -fs -m 5 -X POST "${H[@]}" "$REG" -d "serviceName=$SVC&ip=$IP&port=$IPORT&weight=3&ephemeral=true" \
        --data-urlencode 'metadata={"zone":"a","app":"smoke"}') || fail "register"
    # the full view (disabled ones included) is the console catalog; v1 list hides disabled instances
    LIST="$BASE/v1/ns/catalog/instances?serviceName=$SVC&clusterName=DEFAULT&pageNo=1&pageSize=10"
    PICK='[h for h in d["list"] if h["ip"]=="'$IP'"]'
else
    REG="$BASE/v3/admin/ns/instance"
    R=$(curl -fs -m 5 -X POST "${H[@]}" "$REG" -d "serviceName=$SVC&ip=$IP&port=$IPORT&weight=3&ephemeral=true" \
        --data-urlencode 'metadata={"zone":"a","app":"smoke"}') || fail "register"
    LIST="$BASE/v3/admin/ns/instance/list?serviceName=$SVC"
    PICK='[h for h in d["data"] if h["ip"]=="'$IP'"]'
fi
[ "$(echo "$R" | json 'd["code"]')" = 0 ] || fail "register: $R"
echo "registered $SVC $IP:$IPORT weight 3"

inst() { curl -fs -m 5 "${H[@]}" "$LIST" | json "($PICK or [{}])[0]"; }
seen() { [ "$(curl -fs -m 5 "${H[@]}" "$LIST" | json "len($PICK)" 2>/dev/null)" = 1 ]; }
poll 20 seen || fail "instance not listed"
echo "read: $(inst)"

if [ "$V" = 2x ]; then
    R=$(curl -fs -m 5 -X PATCH "${H[@]}" "$BASE/v1/ns/instance" \
        -d "serviceName=$SVC&ip=$IP&port=$IPORT&ephemeral=true&enabled=false&weight=3") || fail "disable"
    [ "$R" = ok ] || fail "disable: $R"
else
    # 3.1's partial update resets weight (1.0) and enabled (true) when they are not sent: send both.
    R=$(curl -fs -m 5 -X PUT "${H[@]}" "$BASE/v3/admin/ns/instance/partial" \
        -d "serviceName=$SVC&ip=$IP&port=$IPORT&enabled=false&weight=3") || fail "disable"
    [ "$(echo "$R" | json 'd["code"]')" = 0 ] || fail "disable: $R"
fi
disabled() { [ "$(curl -fs -m 5 "${H[@]}" "$LIST" | json "[h['enabled'] for h in $PICK]" 2>/dev/null)" = "[False]" ]; }
poll 20 disabled || fail "instance not disabled: $(inst)"
echo "disabled: $(inst)"
KEPT=$(curl -fs -m 5 "${H[@]}" "$LIST" | json "[(h['weight'], h['metadata'].get('zone'), h['metadata'].get('app')) for h in $PICK]")
[ "$KEPT" = "[(3.0, 'a', 'smoke')]" ] || fail "weight/metadata not kept: $KEPT"
echo "weight and metadata kept"
echo "nacos-$V smoke: 1 passed, 0 failed"
