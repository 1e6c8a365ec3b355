# Shared by infra/dev.sh and infra/test.sh: the project-local virtualenv, the AWS emulator, provisioning.
# Source it; it defines functions and sets ROOT, VENV, STATE.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/infra/.venv"
STATE="$ROOT/infra/.local"
mkdir -p "$STATE"

log() { printf '\033[1m[nex]\033[0m %s\n' "$*" >&2; }

# Creates infra/.venv and installs the pinned tools, again whenever requirements.txt changes.
ensure_venv() {
  local stamp="$VENV/.requirements"
  if [[ -x "$VENV/bin/moto_server" ]] && cmp -s "$ROOT/infra/requirements.txt" "$stamp"; then
    return
  fi
  log "installing the local AWS emulator and tools into infra/.venv (pinned, about a minute)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/infra/requirements.txt"
  cp "$ROOT/infra/requirements.txt" "$stamp"
}

# Installs the Rust toolchain's components the checks use, if rustup can add them.
ensure_rust() {
  command -v cargo >/dev/null || { log "cargo is required (https://rustup.rs)"; exit 1; }
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts moto on 127.0.0.1:$1 in the background; sets MOTO_PID and the AWS_* variables every SDK reads.
start_moto() {
  local port=$1
  # moto with cheap, isolated DynamoDB transactions (see infra/local/moto_server.py).
  "$VENV/bin/python" "$ROOT/infra/local/moto_server.py" -H 127.0.0.1 -p "$port" >"$STATE/moto.log" 2>&1 &
  MOTO_PID=$!
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('$AWS_ENDPOINT_URL/moto-api/', timeout=1)" 2>/dev/null; then
      log "AWS emulator (moto) listening on $AWS_ENDPOINT_URL"
      return
    fi
    sleep 0.1
  done
  log "moto did not start; see $STATE/moto.log"
  exit 1
}

stop_moto() {
  [[ -n "${MOTO_PID:-}" ]] && kill "$MOTO_PID" 2>/dev/null && wait "$MOTO_PID" 2>/dev/null
  MOTO_PID=
}

# Creates every resource of template.yaml in the emulator and writes the manifest to $1; further
# arguments are passed on (e.g. --param WhatsAppApiBaseUrl=...).
provision() {
  local out=$1
  shift
  # The local stack's webhook endpoints are loopback receivers: allowed here, explicitly, never deployed.
  "$VENV/bin/python" "$ROOT/infra/local/provision.py" --endpoint "$AWS_ENDPOINT_URL" --out "$out" \
    --param "AllowLoopbackEndpoints=true" "$@"
}
