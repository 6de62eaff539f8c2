#!/usr/bin/env bash
# Smoke test of the frozen binary (not the source tree), as CI runs it after `make dist`:
#   build/smoke.sh [path/to/slum]        (default: dist/slum; or SLUM_BIN=...)
# In a temp dir with a copy of the binary and of the example (examples/notes) and a temp database:
# serve on a free port, token-gen and token-list, spawn an instance, request it through the proxy,
# the API with the token, a dashboard login, /_/metrics, /_/ and an asset it references, ps --json,
# logs, the children's environment; stop with SIGTERM, then check that no child and no unpacked
# _MEI* folder is left. Exits non-zero with "smoke: FAIL: ...", the end of serve.log and the apps'
# logs on any failure (SMOKE_KEEP=1 keeps the temp dir).
# Needs: bash, curl, python3 (the example app's interpreter).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BIN=${1:-${SLUM_BIN:-$ROOT/dist/slum}}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
EXAMPLE=$ROOT/examples/notes

T=$(mktemp -d "${TMPDIR:-/tmp}/slum-smoke.XXXXXX")
T=$(cd "$T" && pwd -P)
SERVE_PID=""

log() { printf 'smoke: %s\n' "$*" >&2; }
fail() {
    printf 'smoke: FAIL: %s\n' "$*" >&2
    if [[ -f $T/serve.log ]]; then
        printf -- '--- serve.log (last 40 lines) ---\n' >&2
        tail -n 40 "$T/serve.log" >&2
    fi
    # What the apps said (why an instance exited), while the server still answers.
    if [[ -n $SERVE_PID ]] && kill -0 "$SERVE_PID" 2>/dev/null; then
        printf -- '--- slum logs (last 40 lines) ---\n' >&2
        timeout 20 "$T/slum" logs -n 40 >&2 2>&1
    fi
    exit 1
}
cleanup() {
    local rc=$?
    if [[ -n $SERVE_PID ]] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -KILL "$SERVE_PID" 2>/dev/null
    fi
    kill_ours KILL
    if [[ $rc -eq 0 && -z ${SMOKE_KEEP:-} ]]; then rm -rf "$T"; else log "left $T for inspection"; fi
}
trap cleanup EXIT

# Processes whose cwd or environment points into $T, other than this script and its helpers.
ours() {
    python3 - "$T" <<'EOF'
import os, sys
root = sys.argv[1]
mine, pid = set(), os.getpid()
while pid > 1:  # this helper and its ancestors (the script, its subshells)
    mine.add(pid)
    with open(f"/proc/{pid}/stat") as f:
        pid = int(f.read().rsplit(")", 1)[1].split()[1])
for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) in mine:
        continue
    try:
        cwd = os.readlink(f"/proc/{entry}/cwd")
        with open(f"/proc/{entry}/environ", "rb") as f:
            env = f.read()
    except OSError:
        continue
    if cwd == root or cwd.startswith(root + "/") or root.encode() in env:
        print(entry)
EOF
}
kill_ours() {
    local p
    for p in $(ours); do kill "-$1" "$p" 2>/dev/null; done
}

[[ -x $BIN ]] || fail "no executable at $BIN (build it: make dist)"
for tool in curl python3; do
    command -v "$tool" >/dev/null || fail "$tool is needed"
done
[[ -f $EXAMPLE/tenement.toml && -f $EXAMPLE/app.py ]] || fail "no example at $EXAMPLE"

# The binary alone, beside the example's config and app, as a user would run it.
cp "$BIN" "$T/slum"
cp "$EXAMPLE/tenement.toml" "$EXAMPLE/app.py" "$T/"
mkdir "$T/tmp"
cd "$T" || fail "cannot cd to $T"
SLUM=$T/slum
# The one-file binary unpacks itself under TMPDIR: point it into $T to see exactly what it leaves.
export TMPDIR=$T/tmp SLUM_DATABASE=$T/slum.db
unset SLUM_SERVER SLUM_TOKEN

out=$("$SLUM" --version) || fail "--version exited $?"
[[ $out =~ ^slum\ [0-9][^\ ]*\ \(SQLite\ [0-9.]+ ]] || fail "--version printed: $out"
log "$out"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
"$SLUM" serve --host 127.0.0.1 --port "$PORT" --database "$T/slum.db" --config "$T/tenement.toml" \
    >"$T/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 300); do
    curl -sf -o /dev/null "$BASE/api/health" && break
    kill -0 "$SERVE_PID" 2>/dev/null || fail "slum serve exited early"
    sleep 0.05
done
curl -sf -o /dev/null "$BASE/api/health" || fail "slum serve did not answer /api/health within 15 s"
log "serving on $BASE (timings: python3 build/measure.py)"

MEI=$(ls -d "$TMPDIR"/_MEI* 2>/dev/null) || fail "no unpacked _MEI* folder under TMPDIR"

TOKEN=$("$SLUM" token-gen --description smoke --database "$T/slum.db" 2>/dev/null) ||
    fail "token-gen exited $?"
[[ $TOKEN =~ ^slum_ ]] || fail "token-gen printed: $TOKEN"
"$SLUM" token-list --json --database "$T/slum.db" >"$T/tokens.json" || fail "token-list exited $?"
python3 - "$T/tokens.json" "$TOKEN" <<'EOF' || fail "token-list --json: $(cat "$T/tokens.json")"
import json, sys
tokens = json.load(open(sys.argv[1]))
assert [t["description"] for t in tokens] == ["smoke"] and tokens[0]["id"], tokens
assert sys.argv[2] not in open(sys.argv[1]).read(), "token-list shows the secret"
EOF

out=$("$SLUM" spawn notes --id smoke 2>&1) || fail "spawn exited $?: $out"
[[ $out == "notes:smoke healthy"* ]] || fail "spawn printed: $out"
log "$out"

body=$(curl -sS -H 'Host: smoke.notes.localhost' "$BASE/") || fail "request through the proxy failed"
[[ $body == "notes of smoke"* ]] || fail "proxy answered: $body"
curl -sf -o /dev/null -H 'Host: smoke.notes.localhost' -d 'a note' "$BASE/" ||
    fail "POST through the proxy failed"

# The API: a Bearer token (argon2 inside the binary), then a dashboard session cookie.
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/_/api/instances")
[[ $code == 401 ]] || fail "/_/api/instances without a token answered $code, not 401"
curl -sf -o "$T/instances.json" -H "Authorization: Bearer $TOKEN" "$BASE/_/api/instances" ||
    fail "/_/api/instances with the token failed"
curl -sf -o /dev/null -c "$T/cookies" -H 'Content-Type: application/json' \
    -d "{\"token\": \"$TOKEN\"}" "$BASE/_/api/login" || fail "dashboard login failed"
curl -sf -o /dev/null -b "$T/cookies" "$BASE/_/api/session" || fail "session cookie not accepted"
curl -sf -o "$T/metrics.txt" -H "Authorization: Bearer $TOKEN" "$BASE/_/metrics" ||
    fail "GET /_/metrics failed"
grep -q '^slum_' "$T/metrics.txt" || fail "/_/metrics has no slum_ series: $(head -c 300 "$T/metrics.txt")"

# The dashboard (or, in a build without it, the placeholder page), from inside the binary.
curl -sf -o "$T/index.html" "$BASE/_/" || fail "GET /_/ failed"
grep -qi '<html' "$T/index.html" || fail "/_/ is not an HTML page"
# An asset it references: a hashed one under /_/_app/immutable/ if the SPA is built.
asset=$( { grep -oE '"/_/_app/immutable/[^"]+\.(js|css)"' "$T/index.html";
          grep -oE '(src|href)="/_/[^"]+"' "$T/index.html"; } | head -n 1 | cut -d'"' -f2)
if [[ -n $asset ]]; then
    curl -sf -D "$T/asset.headers" -o "$T/asset" "$BASE$asset" ||
        fail "GET $asset (referenced by /_/) failed"
    [[ -s $T/asset ]] || fail "GET $asset: empty body"
    if [[ $asset == /_/_app/immutable/* ]]; then
        grep -qi '^cache-control:.*immutable' "$T/asset.headers" ||
            fail "$asset is not served as immutable: $(cat "$T/asset.headers")"
    fi
    # A client-side route gets the SPA's index.html.
    curl -sf "$BASE/_/instances" | grep -qi '<html' || fail "GET /_/instances: no SPA fallback"
    log "dashboard: /_/ and $asset served"
else
    grep -q 'not built into this copy' "$T/index.html" ||
        fail "/_/ references no asset and is not the placeholder page"
    log "dashboard: not built into this binary, placeholder page served"
fi

"$SLUM" ps --json >"$T/ps.json" || fail "ps --json exited $?"
python3 - "$T/ps.json" <<'EOF' || fail "ps --json: $(cat "$T/ps.json")"
import json, sys
instances = {i["id"]: i for i in json.load(open(sys.argv[1]))}
assert instances["notes:smoke"]["status"] == "healthy", instances
assert instances["notes:demo"]["status"] in ("healthy", "stopped"), instances
EOF
"$SLUM" logs notes:smoke -n 50 >"$T/logs.txt" || fail "logs exited $?"
grep -q 'note added for smoke' "$T/logs.txt" || fail "logs lack the app's output: $(cat "$T/logs.txt")"
# Full-text search runs on the SQLite inside the binary (FTS5).
"$SLUM" logs --search 'added' -n 5 >"$T/search.txt" || fail "logs --search exited $?"
grep -q 'note added for smoke' "$T/search.txt" || fail "logs --search found: $(cat "$T/search.txt")"

# Children got a clean environment: nothing pointing into the unpacked folder.
python3 - "$T/ps.json" <<'EOF' || fail "a child inherited the frozen binary's environment"
import json, sys
pids = [i["pid"] for i in json.load(open(sys.argv[1])) if i["pid"]]
assert pids, "ps --json shows no pid"
for pid in pids:
    env = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace").split("\0")
    bad = [v for v in env if v.startswith(("_PYI_", "_MEIPASS", "PYINSTALLER_")) or "_MEI" in v]
    assert not bad, f"child {pid}: {bad}"
EOF

kill -TERM "$SERVE_PID"
for _ in $(seq 300); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$SERVE_PID" 2>/dev/null && fail "slum still running 30 s after SIGTERM"
wait "$SERVE_PID"
rc=$?
SERVE_PID=""
[[ $rc == 0 ]] || fail "slum serve exited $rc after SIGTERM"
sleep 0.2
left=$(ours)
if [[ -n $left ]]; then
    ps -o pid,ppid,args -p "$(echo $left | tr ' ' ,)" >&2
    fail "processes left after SIGTERM: $left"
fi
[[ -e $MEI ]] && fail "unpacked folder $MEI left after SIGTERM"
[[ -z $(ls -A "$TMPDIR") ]] || fail "TMPDIR not empty after exit: $(ls -A "$TMPDIR")"
log "ok: SIGTERM stopped slum and its children, $MEI removed"
