# Shared settings and helpers for tests/cluster/*. Sourced, not run.
# shellcheck shell=bash disable=SC2034 # the settings are used by the scripts that source this

# The pinned release; tests/cluster/k8s/go.mod requires the same version. Kubelets from 1.35 on
# refuse cgroup v1, which this machine has (docs/testing.md).
KB_K8S_VERSION=v1.33.13
# The Kubernetes commands, and our own CRI helper built from the same module (tests/cluster/k8s).
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kb-cri-reset)
KB_K8S_CACHE=${KB_K8S_CACHE:-$HOME/.cache/kb/k8s}
KB_IMAGE_CACHE=${KB_IMAGE_CACHE:-$HOME/.cache/kb/images}

# Everything `up` creates lives under the state dir; `down` removes it.
KB_CLUSTER_DIR=${KB_CLUSTER_DIR:-$HOME/.cache/kb/cluster}
STATE=$KB_CLUSTER_DIR
RUN_DIR=$STATE/run
LOG_DIR=$STATE/log
PKI=$STATE/pki

# Networking. The node gets its own bridge and address because the hostname resolves to
# 127.0.0.1 and there is no dummy interface; the apiserver advertises this address to pods.
NODE_NAME=kb-node
NODE_BRIDGE=${KB_NODE_BRIDGE:-kbnode0}
NODE_IP=${KB_NODE_IP:-10.87.0.1}
POD_BRIDGE=${KB_POD_BRIDGE:-kbpods0}
POD_CIDR=${KB_POD_CIDR:-10.88.0.0/16}
SERVICE_CIDR=${KB_SERVICE_CIDR:-10.96.0.0/16}
SERVICE_IP=${KB_SERVICE_IP:-10.96.0.1}
APISERVER_PORT=6443
ETCD_CLIENT_PORT=2379
ETCD_PEER_PORT=2380
REGISTRY=127.0.0.1:5000
PAUSE_IMAGE=$REGISTRY/kb/pause:1
DEBIAN_IMAGE=$REGISTRY/kb/debian:bookworm
CONTAINERD_SOCK=$STATE/containerd/containerd.sock

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

k8s_bin_dir() { printf '%s/%s/bin' "$KB_K8S_CACHE" "$KB_K8S_VERSION"; }

k8s_missing_binaries() {
  local b dir; dir=$(k8s_bin_dir)
  for b in "${K8S_BINARIES[@]}"; do [[ -x $dir/$b ]] || echo "$b"; done
}

k8s_binaries_present() { [[ -z $(k8s_missing_binaries) ]]; }

kubectl_() { "$(k8s_bin_dir)/kubectl" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }

# pid_of NAME: the PID recorded for NAME if that process is alive and still runs the command we
# started (guards against a recycled PID); fails otherwise.
pid_of() {
  local name=$1 pidfile=$RUN_DIR/$1.pid pid exe
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ -f $RUN_DIR/$name.exe && $exe == "$(<"$RUN_DIR/$name.exe")" ]] || return 1
  echo "$pid"
}

# start_daemon NAME CMD...: start CMD in its own session with its log in $LOG_DIR/NAME.log and
# its PID in $RUN_DIR/NAME.pid, unless it already runs. Records NAME in STARTED.
start_daemon() {
  local name=$1; shift
  local pid exe
  if pid=$(pid_of "$name"); then
    return 0
  fi
  exe=$(readlink -f "$(command -v "$1")") || die "$1 not found"
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  echo "$exe" >"$RUN_DIR/$name.exe"
  # setsid may fork; the inner shell records its own PID and then becomes the daemon by exec.
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN_DIR/$name.pid" "$@" \
    >>"$LOG_DIR/$name.log" 2>&1 </dev/null 9>&- &
  local deadline=$((SECONDS + 30))
  until [[ -s $RUN_DIR/$name.pid ]]; do
    ((SECONDS < deadline)) || die "$name did not start in 30s (log: $LOG_DIR/$name.log)"
    sleep 0.02
  done
  # Until the inner shell has exec'ed, /proc/PID/exe is bash; wait for the daemon (or its exit).
  pid=$(<"$RUN_DIR/$name.pid")
  while alive "$pid" && [[ $(readlink "/proc/$pid/exe" 2>/dev/null) != "$exe" ]]; do
    ((SECONDS < deadline)) || break
    sleep 0.02
  done
  STARTED+=("$name")
}

# alive PID: the process exists and is not a zombie (our daemons' parent is PID 1, which may
# reap them late).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# stop_daemon NAME [SECONDS]: TERM, then KILL after SECONDS (default 10); forgets the PID file.
stop_daemon() {
  local name=$1 grace=${2:-10} pid deadline
  if pid=$(pid_of "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
    if alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      log "killed $name (pid $pid) after ${grace}s"
    else
      log "stopped $name (pid $pid)"
    fi
  fi
  rm -f "$RUN_DIR/$name.pid" "$RUN_DIR/$name.exe"
}

# wait_for WHAT SECONDS CMD...: retry CMD until it succeeds; on timeout die naming WHAT and, when
# a log of that name exists, print its tail.
wait_for() {
  local what=$1 secs=$2 deadline; shift 2
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "error: timed out after ${secs}s waiting for $what"
      local f; for f in "$LOG_DIR"/*.log; do
        [[ -f $f && $what == *"$(basename "$f" .log)"* ]] && { log "--- tail of $f"; tail -n 30 "$f" >&2; }
      done
      exit 1
    fi
    sleep 0.2
  done
}

# require_daemon NAME: die with the log tail if NAME is not running (it exited right after start).
require_daemon() {
  pid_of "$1" >/dev/null && return 0
  log "error: $1 exited; last lines of $LOG_DIR/$1.log:"
  tail -n 30 "$LOG_DIR/$1.log" >&2 || true
  exit 1
}

# lock_cluster: serialize up and down on this state dir (the lock file sits beside it, since down
# removes the dir). Held until the calling script exits; daemons do not inherit it (start_daemon
# closes fd 9). up sets KB_CLUSTER_LOCKED when it runs down itself.
lock_cluster() {
  [[ -n ${KB_CLUSTER_LOCKED:-} ]] && return 0
  mkdir -p "$(dirname "$STATE")"
  exec 9>"$STATE.lock"
  flock -w 900 9 || die "another tests/cluster/up or down holds $STATE.lock"
}
