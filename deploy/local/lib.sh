# Shared helpers for deploy/local/{up,down,status}. Sourced, not executed.
# shellcheck shell=bash disable=SC2034 # variables are used by the sourcing scripts

LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$LOCAL_DIR/../.." && pwd)
# shellcheck source=config.env
source "$LOCAL_DIR/config.env"
# shellcheck source=versions.env
source "$LOCAL_DIR/versions.env"

BIN_DIR="$HAVOC_CACHE/current"
PID_DIR="$HAVOC_STATE/pids"
LOG_DIR="$HAVOC_STATE/logs"
KWOK_WORKDIR_PATH="$HAVOC_STATE/kwok"
KWOK_CLUSTER_DIR="$KWOK_WORKDIR_PATH/clusters/$HAVOC_CLUSTER_NAME"
KUBECONFIG_PATH="$HAVOC_STATE/kubeconfig"

# Components we start ourselves: name, port, pattern expected in /proc/PID/cmdline.
OWN_COMPONENTS=(kube-state-metrics alertmanager prometheus sink)

log() { printf '[havoc-local %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# kwokctl with our workdir, binaries and versions: nothing is ever downloaded.
kwokctl_env() {
  export KWOK_WORKDIR="$KWOK_WORKDIR_PATH"
  export KWOK_RUNTIME=binary
  export KWOK_KUBE_VERSION="$KUBE_VERSION"
  export KWOK_ETCD_VERSION="${ETCD_VERSION#v}"
  export KWOK_KUBE_APISERVER_BINARY="$BIN_DIR/kube-apiserver"
  export KWOK_KUBE_CONTROLLER_MANAGER_BINARY="$BIN_DIR/kube-controller-manager"
  export KWOK_KUBE_SCHEDULER_BINARY="$BIN_DIR/kube-scheduler"
  export KWOK_KUBECTL_BINARY="$BIN_DIR/kubectl"
  export KWOK_ETCD_BINARY="$BIN_DIR/etcd"
  export KWOK_CONTROLLER_BINARY="$BIN_DIR/kwok"
}
kwokctl() { (kwokctl_env; "$BIN_DIR/kwokctl" --name "$HAVOC_CLUSTER_NAME" "$@"); }
kctl() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

component_port() {
  case $1 in
    kube-state-metrics) echo "$HAVOC_KSM_PORT" ;;
    alertmanager) echo "$HAVOC_ALERTMANAGER_PORT" ;;
    prometheus) echo "$HAVOC_PROMETHEUS_PORT" ;;
    sink) echo "$HAVOC_SINK_PORT" ;;
    kube-apiserver) echo "$HAVOC_APISERVER_PORT" ;;
    etcd) echo "$HAVOC_ETCD_PORT" ;;
    kwok-controller) echo "$HAVOC_KWOK_CONTROLLER_PORT" ;;
    kube-controller-manager) echo "$HAVOC_KCM_PORT" ;;
    kube-scheduler) echo "$HAVOC_SCHEDULER_PORT" ;;
    *) echo "-" ;;
  esac
}

component_cmd_pattern() {
  case $1 in
    kube-state-metrics) echo "kube-state-metrics" ;;
    alertmanager) echo "prometheus-alertmanager" ;;
    prometheus) echo "prometheus" ;;
    sink) echo "sink.py" ;;
    *) echo "$1" ;;
  esac
}

# pid_alive PIDFILE PATTERN: prints the pid if the process lives and its command line
# contains PATTERN (guards against a recycled pid).
pid_alive() {
  local pidfile=$1 pattern=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  proc_running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern" || return 1
  echo "$pid"
}

# proc_running PID: the process exists and is not a zombie (dead children of ours are
# reparented to PID 1, which may reap them late).
proc_running() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# stop_pid PIDFILE PATTERN NAME: SIGTERM, wait up to 10 s, then SIGKILL. By pid only.
stop_pid() {
  local pidfile=$1 pattern=$2 name=$3 pid i
  if pid=$(pid_alive "$pidfile" "$pattern"); then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      proc_running "$pid" || break
      sleep 0.1
    done
    if proc_running "$pid"; then
      log "$name did not stop in 10 s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

# start_bg NAME CMD...: detached (own session), output to $LOG_DIR/NAME.log, pid to $PID_DIR/NAME.pid.
start_bg() {
  local name=$1; shift
  mkdir -p "$PID_DIR" "$LOG_DIR"
  # setsid (no fork: a background job is no process-group leader) keeps $! == the daemon's pid.
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$PID_DIR/$name.pid"
}

# http_ok URL: true when URL answers 2xx within 2 s.
http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

# wait_for DESCRIPTION TIMEOUT_S CMD...: poll CMD every 0.5 s.
wait_for() {
  local what=$1 timeout=$2 start=$SECONDS; shift 2
  until "$@"; do
    if ((SECONDS - start >= timeout)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

# render TEMPLATE OUT KEY=VALUE...: replace @KEY@ placeholders; returns 0 if OUT changed.
render() {
  local in=$1 out=$2 tmp; shift 2
  local args=() kv
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  tmp=$(mktemp "$out.XXXX")
  sed "${args[@]}" "$in" >"$tmp"
  if [[ -f $out ]] && cmp -s "$tmp" "$out"; then rm -f "$tmp"; return 1; fi
  mv "$tmp" "$out"
}

# Processes of the kwokctl-managed control plane: "name pid" lines from kwok's pidfiles.
kwok_pids() {
  local f
  for f in "$KWOK_CLUSTER_DIR"/pids/*.pid; do
    [[ -f $f ]] || continue
    echo "$(basename "$f" .pid) $(<"$f")"
  done
}
