# Shared by the scripts: installs the pinned Rust toolchain, and a Debian package when its command is missing.
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
install() { # command, Debian package, why
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2 (Debian package) $3" >&2
  $sudo apt-get install -y "$2" >/dev/null 2>&1 || {
    $sudo apt-get update >/dev/null && $sudo apt-get install -y "$2" >/dev/null
  }
}
# rustup installs rust-toolchain.toml's targets and components only with the
# toolchain itself: a machine that already has Rust 1.95.0 without the
# wasm32-wasip2 target fails every plugin build. This adds what is missing
# (and returns at once when nothing is).
toolchain() {
  rustup toolchain install >/dev/null 2>&1 || rustup toolchain install
}

# Whether something accepts connections at HOST:PORT (an unspecified
# address means this machine). Port 0 (any free port) is never busy.
busy() {
  local host=${1%:*} port=${1##*:}
  host=${host#[}; host=${host%]}
  case "$host" in ""|0.0.0.0) host=127.0.0.1 ;; ::) host=::1 ;; esac
  [ "$port" != 0 ] && timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}
# The value of --NAME VALUE or --NAME=VALUE among the arguments after the first.
flag() {
  local name=$1 found=""; shift
  while [ $# -gt 0 ]; do
    case "$1" in
      "--$name") found=${2:-}; shift ;;
      "--$name="*) found=${1#*=} ;;
    esac
    shift
  done
  printf '%s' "$found"
}
# Stops `scripts/serve` before the build when a port `executor serve` takes
# (the embedded queue's, the operations port) is in use, naming both fixes.
ports_free() {
  local queue ops problems="" arg
  for arg in "$@"; do case "$arg" in -h|--help|-V|--version) return ;; esac; done
  queue=$(flag listen "$@"); queue=${queue:-${EXECUTOR_LISTEN:-127.0.0.1:3180}}
  ops=$(flag debug-listen "$@"); ops=${ops:-${EXECUTOR_DEBUG_LISTEN:-127.0.0.1:6060}}
  if [ -z "${EXECUTOR_FRONTEND_URL:-}" ] && busy "$queue"; then
    problems+="  $queue (the embedded queue, EXECUTOR_LISTEN) is in use: an \`executor serve\` may be running already (\`target/debug/executor jobs\` talks to it);
    to serve beside it: EXECUTOR_LISTEN=127.0.0.1:3181 scripts/serve (or --listen; port 0 picks a free one)
"
  fi
  if [ "$ops" != off ] && busy "$ops"; then
    problems+="  $ops (the operations port, EXECUTOR_DEBUG_LISTEN) is in use;
    pick another: EXECUTOR_DEBUG_LISTEN=127.0.0.1:6061 scripts/serve (or --debug-listen; \`off\` for none)
"
  fi
  if [ -n "$problems" ]; then
    printf 'scripts/serve: cannot start, before building anything:\n%s' "$problems" >&2
    exit 1
  fi
}
