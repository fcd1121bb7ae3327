# shellcheck shell=bash disable=SC2154 # the variables of tests/install/run, which sources this file
# The image checks of tests/install/run (sourced: uses its helpers and variables).
#
# 1. deploy/image/build makes the OCI archive; its layout is checked (user 65532, entrypoint
#    /havoc, static binary, CA bundle, passwd, nothing else: no shell).
# 2. Can podman run it here? Its defaults cannot (printed); runc with rlimits within the
#    sandbox's hard limits can.
# 3. The image runs `havoc serve` as a pod would, in podman (else chrooted into its unpacked
#    rootfs), under tests/install/in-cluster (private mount namespace, the chart's
#    ServiceAccount token at /var/run/secrets/kubernetes.io/serviceaccount), user 65532,
#    the Deployment's args, the chart's ConfigMaps and Secret mounted where the pod has them,
#    /etc/resolv.conf as in a pod (cluster search domains, ndots:5) pointing at a local
#    DNS server (dnsmasq) that knows the cluster names, and:
#    - DNS: Prometheus and Alertmanager are configured by their cluster DNS names
#      (prometheus.monitoring) and havoc reads them; dnsmasq's log shows the search path;
#    - CA: an HTTPS webhook served with a certificate of a test CA is delivered when that CA
#      is in /etc/ssl/certs/ca-certificates.crt, and refused with the image's own bundle.
# 4. A private Prometheus scrapes that havoc: every dashboard query and every alert
#    expression runs without error, havoc's metrics are there, and HavocDown /
#    HavocHealthUnreadable stay silent while it is up and reading health.

image_tar=$work/havoc.oci.tar
image_dir=$work/image

check_image_build() {
  local t0=$SECONDS
  rm -f "$image_tar"
  HAVOC_IMAGE_OUT=$image_tar deploy/image/build >/dev/null 2>"$work/image-build.log" || { tail -30 "$work/image-build.log"; return 1; }
  log "built in $((SECONDS - t0)) s: $image_tar ($(du -h "$image_tar" | cut -f1))"
  rm -rf "$image_dir"
  mkdir -p "$image_dir"
  tool oci-unpack "$image_tar" "$image_dir" >"$image_dir/summary.json"
  "$PY" - "$image_dir/summary.json" >&3 <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
c = s["config"]
problems = []
if c.get("User") != "65532:65532":
    problems.append(f"user {c.get('User')!r}")
if c.get("Entrypoint") != ["/havoc"]:
    problems.append(f"entrypoint {c.get('Entrypoint')!r}")
if c.get("Cmd"):
    problems.append(f"cmd {c.get('Cmd')!r}")
if (s["os"], s["architecture"]) != ("linux", "amd64"):
    problems.append(f"platform {s['os']}/{s['architecture']}")
files = {f["path"]: f for f in s["files"]}
want = {"/havoc": "f", "/etc": "d", "/etc/passwd": "f", "/etc/group": "f", "/etc/ssl": "d",
        "/etc/ssl/certs": "d", "/etc/ssl/certs/ca-certificates.crt": "f", "/tmp": "d"}
if {p: f["kind"] for p, f in files.items()} != want:
    problems.append(f"files {sorted(files)} (want exactly {sorted(want)}: no shell, nothing else)")
if files.get("/havoc", {}).get("mode") != "0o755":
    problems.append("/havoc not 0755")
if files.get("/tmp", {}).get("mode") != "0o1777":
    problems.append("/tmp not 1777")
if any(f["uid"] or f["gid"] for f in s["files"]):
    problems.append("files not owned by root")
if problems:
    sys.exit("image layout: " + "; ".join(problems))
print(f"    {s['ref']}: {s['layers']} layer, {len(files)} entries, user {c['User']}, entrypoint {c['Entrypoint']}")
EOF
  grep -q '^havoc:x:65532:65532:' "$image_dir/rootfs/etc/passwd" || { fail "no passwd entry for 65532"; return 1; }
  if LC_ALL=C readelf -lW "$image_dir/rootfs/havoc" | grep -q 'program interpreter'; then
    fail "/havoc is dynamically linked"; return 1
  fi
  # Runs at all, outside any namespace trick: the static binary needs nothing from the host.
  log "$(env -i "$image_dir/rootfs/havoc" --version)"
  # Its allocator (mimalloc, .cargo/config.toml) turns transparent huge pages off for its
  # process as it starts: on a node whose THP setting is "always" its arena would
  # otherwise be backed by 2 MiB pages.
  strace -f -qq -e trace=prctl -o "$work/image-prctl.txt" env -i "$image_dir/rootfs/havoc" --version >/dev/null
  grep -q 'PR_SET_THP_DISABLE, 1' "$work/image-prctl.txt" \
    || { fail "the image's binary leaves transparent huge pages on: $(cat "$work/image-prctl.txt")"; return 1; }
}

# podman: can it run the image here? Rootful, vfs storage, host network, cgroupfs. Its
# defaults do not work on this machine (see the report this prints); runc with rlimits
# within the sandbox's hard limits does. The runner of the next check is written to
# $work/runner: podman if it works, else chroot (the unpacked rootfs).
podman_cmd=(podman --log-level error --root "$cache/containers/storage" --runroot "$cache/containers/run"
  --storage-driver vfs --cgroup-manager cgroupfs --events-backend file)
podman_run=(--runtime runc --network host --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
check_podman() {
  echo chroot >"$work/runner"
  [[ -s $image_tar ]] || { fail "no image (its build failed)"; return 1; }
  command -v podman >/dev/null || { log "podman is not installed: the image runs from its rootfs"; return 0; }
  "${podman_cmd[@]}" rmi --force localhost/havoc:test >/dev/null 2>&1 || true
  "${podman_cmd[@]}" load -q -i "$image_tar" >/dev/null
  "${podman_cmd[@]}" tag "$("${podman_cmd[@]}" images -q --filter reference=localhost/havoc | head -1)" localhost/havoc:test
  # What podman does by default, and why it fails here (reported, not a failure).
  local out
  out=$("${podman_cmd[@]}" run --rm --network host localhost/havoc:test --version 2>&1) || true
  log "podman with its defaults: $(tail -1 <<<"$out")"
  out=$("${podman_cmd[@]}" run --rm --network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    localhost/havoc:test --version 2>&1) || true
  log "podman, crun, lower rlimits: $(tail -1 <<<"$out")"
  if out=$("${podman_cmd[@]}" run --rm "${podman_run[@]}" localhost/havoc:test --version 2>&1); then
    log "podman, runc, rlimits within the hard limits: $out -> the image runs in podman"
    echo "${HAVOC_INSTALL_RUNNER:-podman}" >"$work/runner"
  else
    log "podman, runc: $(tail -1 <<<"$out") -> the image runs from its rootfs (chroot)"
  fi
}

dns_log=$work/dnsmasq.log
start_dns() {
  # A cluster DNS stand-in: the names the config uses, under cluster.local; anything else
  # under cluster.local is NXDOMAIN (so the search path is walked as in a pod).
  spawn "$work/dnsmasq.out" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --listen-address="$dns" --bind-interfaces --port=53 --user=root --pid-file= \
    --local=/cluster.local/ --log-queries --log-facility="$dns_log" \
    --host-record=prometheus.monitoring.svc.cluster.local,127.0.0.1 \
    --host-record=alertmanager.monitoring.svc.cluster.local,127.0.0.1 \
    --host-record="hooks.$ns.svc.cluster.local,127.0.0.1"
  wait_for 10 "dnsmasq on $dns:53" grep -q "started" "$dns_log" || { cat "$work/dnsmasq.out"; return 1; }
}
dig_a() { # resolve NAME with the test's DNS server only (python: no dig on the machine)
  "$PY" - "$dns" "$1" <<'EOF'
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0x4856, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(q, (server, 53))
r = s.recv(512)
if r[3] & 15 or struct.unpack(">H", r[6:8])[0] == 0:
    sys.exit(1)
print(".".join(str(b) for b in r[-4:]))
EOF
}

make_certs() {
  local d=$work/pki
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=havoc tests-install CA $id" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=hooks.$ns" -keyout "$d/hook.key" -out "$d/hook.csr" 2>/dev/null
  printf 'subjectAltName=DNS:hooks.%s,DNS:hooks.%s.svc,DNS:hooks.%s.svc.cluster.local\n' "$ns" "$ns" "$ns" >"$d/ext"
  openssl x509 -req -in "$d/hook.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 1 \
    -extfile "$d/ext" -out "$d/hook.crt" 2>/dev/null
  # The bundle a pod would see with the test CA added, e.g. by a mounted bundle.
  cat "$image_dir/rootfs/etc/ssl/certs/ca-certificates.crt" "$d/ca.crt" >"$d/bundle-with-test-ca.crt"
}

# The image's havoc, as the Deployment runs it: its args, the ConfigMaps at their mount
# points, the webhook Secret as a file, an emptyDir for the journal and /tmp, a pod's
# resolv.conf and hosts, the ServiceAccount token, non-root 65532, read-only root. In
# podman when it works here (check_podman), else chrooted into the unpacked rootfs.
image_pid=""
start_image_havoc() { # start_image_havoc NAME [SRC:DST ...]: extra read-only mounts; log in $work/image-NAME.log
  local name=$1 run runner
  run=$work/run-$name
  runner=$(cat "$work/runner" 2>/dev/null || echo chroot)
  shift
  rm -rf "$run"
  mkdir -p "$run/data" "$run/tmp" "$run/secret"
  chown 65532:65532 "$run/data"
  chmod 1777 "$run/tmp"
  cp "$work/webhook-secret" "$run/secret/secret"
  chown 65532:65532 "$run/secret/secret"
  chmod 0400 "$run/secret/secret"
  # A pod's /etc/resolv.conf in namespace $ns, with the cluster DNS at $dns.
  printf 'search %s.svc.cluster.local svc.cluster.local cluster.local\nnameserver %s\noptions ndots:5\n' "$ns" "$dns" >"$run/resolv.conf"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$run/hosts"
  local mounts=(
    "$work/image-config/havoc.yaml:/etc/havoc/havoc.yaml:ro"
    "$work/image-config/policies:/etc/havoc/policies:ro"
    "$run/secret:/etc/havoc/secrets/webhook:ro"
    "$run/data:/var/lib/havoc" "$run/tmp:/tmp"
    "$run/resolv.conf:/etc/resolv.conf:ro" "$run/hosts:/etc/hosts:ro"
  ) m
  for m in "$@"; do mounts+=("$m:ro"); done
  local args
  mapfile -t args < <(kubectl -n "$ns" get deployment "$release" -o jsonpath='{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}')
  local ic=("$here/in-cluster" -n "$ns" -s "$release" -e "HAVOC_API_TOKEN=$(cat "$work/api-token")")
  if [[ $runner == podman ]]; then
    local sa=/var/run/secrets/kubernetes.io/serviceaccount vols=()
    for m in "${mounts[@]}"; do vols+=(-v "$m"); done
    # podman reads the token mounted by in-cluster, exactly where the kubelet would put it.
    spawn "$work/image-$name.log" "${ic[@]}" --owner 65532:65532 -- \
      "${podman_cmd[@]}" run --rm --name "havoc-install-$id-$name" "${podman_run[@]}" \
      --user 65532:65532 --read-only --cap-drop ALL --security-opt no-new-privileges \
      -e KUBERNETES_SERVICE_HOST -e KUBERNETES_SERVICE_PORT -e POD_NAME -e POD_NAMESPACE -e HAVOC_API_TOKEN \
      -v "$sa:$sa:ro" "${vols[@]}" localhost/havoc:test "${args[@]}"
  else
    # A copy of the rootfs per run: a container starts from the image, not from the last run.
    cp -a "$image_dir/rootfs" "$run/rootfs"
    local flags=()
    for m in "${mounts[@]}"; do flags+=(-m "$m"); done
    spawn "$work/image-$name.log" "${ic[@]}" --root "$run/rootfs" --user 65532:65532 "${flags[@]}" -- /havoc "${args[@]}"
  fi
  image_pid=$spawned
  log "$name: havoc from the image in $runner"
  wait_for 60 "/readyz of the image's havoc ($name)" ready "$port_image" || { tail -20 "$work/image-$name.log"; return 1; }
}

received() { [[ -s $work/sink.jsonl ]]; }
sink_up() { curl -fsS --cacert "$work/pki/ca.crt" --resolve "hooks.$ns:$port_sink:127.0.0.1" "https://hooks.$ns:$port_sink/healthz"; }
dropped() { grep -q "notification dropped" "$work/image-without-ca.log"; }
prom_query() { # prom_query EXPR: prints the JSON answer of the private Prometheus
  curl -fsS --max-time 10 "http://127.0.0.1:$port_prom/api/v1/query" --data-urlencode "query=$1"
}
prom_has() { prom_query "$1" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["status"]=="success" and d["data"]["result"] else 1)'; }

check_image_run() {
  [[ -s $image_tar && -x $image_dir/rootfs/havoc ]] || { fail "no image (its build failed)"; return 1; }
  start_dns
  [[ $(dig_a "prometheus.monitoring.svc.cluster.local") == 127.0.0.1 ]] || { fail "the test DNS does not answer"; return 1; }
  make_certs
  : >"$work/sink.jsonl"
  spawn "$work/sink.log" "$PY" "$here/https-sink.py" "$port_sink" "$work/pki/hook.crt" "$work/pki/hook.key" "$work/sink.jsonl"
  wait_for 10 "the HTTPS sink" sink_up

  # The config: the chart's, with cluster DNS names for the health sources and an HTTPS
  # webhook; dry run (the victim pods are only selected), notifications on every verdict.
  local prom_port=${HAVOC_PROMETHEUS_URL##*:} am_port=${HAVOC_ALERTMANAGER_URL##*:}
  prom_port=${prom_port%/} am_port=${am_port%/}
  cat >"$work/image-values.yaml" <<EOF
config:
  liveNamespaces: []
  health:
    prometheus: {url: "http://prometheus.monitoring:$prom_port", timeout: 3s}
    alertmanager: {url: "http://alertmanager.monitoring:$am_port", timeout: 3s}
  receivers:
    - name: hook
      webhook: {url: "https://hooks.$ns:$port_sink/hook", secret: {file: /etc/havoc/secrets/webhook/secret}}
  notify: {receivers: [hook], on: [passed, skipped, deviated, errored, rollbackFailed]}
  server: {listen: "127.0.0.1:$port_image"}
EOF
  "$helm" template "$release" "$chart" --namespace "$ns" -f "$work/values.yaml" -f "$work/image-values.yaml" >"$work/image-rendered.yaml"
  mkdir -p "$work/image-config/policies"
  tool configmap "$work/image-rendered.yaml" "$release-config" "$work/image-config"
  tool configmap "$work/image-rendered.yaml" "$release-policies" "$work/image-config/policies"

  # --- with the test CA in the bundle: everything works
  start_image_havoc with-ca "$work/pki/bundle-with-test-ca.crt:/etc/ssl/certs/ca-certificates.crt"
  local out record
  out=$(run_policy "$port_image") || return 1
  [[ $out == "202 "* ]] || { fail "POST run: $out"; return 1; }
  record=${out#* }
  log "experiment from the image: $(field "$record" verdict) (dry run: $(field "$record" dryRun))"
  wait_for 30 "the webhook over HTTPS" received || { tail -20 "$work/image-with-ca.log"; return 1; }
  "$PY" - "$work/sink.jsonl" "$work/webhook-secret" "$(field "$record" id)" >&3 <<'EOF' || return 1
import hashlib, hmac, json, sys
hook = json.loads(open(sys.argv[1]).readline())
secret = open(sys.argv[2]).read().strip().encode()
# `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` (README: Notifications).
pairs = dict(p.strip().partition("=")[::2] for p in hook["headers"].get("x-havoc-signature", "").split(","))
t = pairs.get("t", "")
want = hmac.new(secret, t.encode() + b"." + hook["body"].encode(), hashlib.sha256).hexdigest()
assert t and hmac.compare_digest(want, pairs.get("v1", "")), "bad signature: " + hook["headers"].get("x-havoc-signature", "")
assert json.loads(hook["body"])["id"] == sys.argv[3], "another experiment"
print("    webhook received over TLS (test CA from /etc/ssl/certs/ca-certificates.crt), signature valid")
EOF
  # DNS: the health sources were read by name, walking the pod's search path.
  curl -fsS "http://127.0.0.1:$port_image/metrics" >"$work/image-metrics.txt"
  grep -E '^havoc_health_checks_total\{source="(prometheus|alertmanager)",result="ok"\}' "$work/image-metrics.txt" | sed 's/^/    /' >&3
  grep -q 'source="prometheus",result="ok"' "$work/image-metrics.txt" || { fail "Prometheus not read by name"; return 1; }
  grep -q 'source="alertmanager",result="ok"' "$work/image-metrics.txt" || { fail "Alertmanager not read by name"; return 1; }
  if ! grep -q "query\[A\] prometheus.monitoring.$ns.svc.cluster.local" "$dns_log" \
    || ! grep -q "config prometheus.monitoring.svc.cluster.local is 127.0.0.1" "$dns_log"; then
    fail "no search-path lookups in the DNS log"; return 1
  fi
  log "DNS: prometheus.monitoring -> $ns.svc.cluster.local (NXDOMAIN) -> svc.cluster.local (127.0.0.1)"

  # --- the dashboard and the alert rules against a Prometheus scraping this havoc
  check_prometheus_queries || return 1
  stop "$image_pid" || true

  # --- control: the image's own bundle does not have the test CA, and the webhook fails
  : >"$work/sink.jsonl"
  start_image_havoc without-ca
  out=$(run_policy "$port_image") || return 1
  wait_for 60 "the webhook to be dropped" dropped || { tail -5 "$work/image-without-ca.log"; return 1; }
  ! received || { fail "delivered without the test CA: the bundle path is not what havoc reads"; return 1; }
  log "control, image's own bundle: $(grep -m1 'notification dropped' "$work/image-without-ca.log" | sed 's/\x1b\[[0-9;]*m//g; s/^.*notification dropped/notification dropped/')"
  grep -qi "certificate\|UnknownIssuer" "$work/image-without-ca.log" || { fail "dropped, but not for the certificate"; return 1; }
  stop "$image_pid" || true
}

check_prometheus_queries() {
  mkdir -p "$work/prom"
  cat >"$work/prom/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: $release   # what the chart's ServiceMonitor gives: the Service's name
    static_configs: [{targets: ['127.0.0.1:$port_image']}]
EOF
  spawn "$work/prom/prometheus.log" prometheus --config.file "$work/prom/prometheus.yml" \
    --storage.tsdb.path "$work/prom/data" --web.listen-address "127.0.0.1:$port_prom"
  local prom_pid=$spawned
  wait_for 30 "havoc scraped" prom_has "havoc_health_checks_total{job=\"$release\"}" || { tail -5 "$work/prom/prometheus.log"; return 1; }
  # rate() and increase() need two samples in their window.
  wait_for 30 "three scrapes" prom_has "count_over_time(havoc_policies{job=\"$release\"}[1m]) >= 3"
  # Every dashboard query ($job = the release) and every alert expression, on live data.
  "$helm" template "$release" "$chart" --namespace "$ns" -f "$work/values.yaml" \
    --show-only templates/prometheusrule.yaml >"$work/prom/rule.yaml"
  tool rules "$work/prom/rule.yaml" "$work/prom/rules.yaml"
  "$PY" - "$port_prom" "$work/dashboard-queries.jsonl" "$work/prom/rules.yaml" "$release" >&3 <<'EOF'
import json, sys, urllib.parse, urllib.request
import yaml
port, queries, rules, job = sys.argv[1:5]
def query(q):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        return json.load(urllib.request.urlopen(url, timeout=10))
    except urllib.error.HTTPError as e:
        return json.load(e)
bad, empty = [], []
for line in open(queries):
    q = json.loads(line).replace('job=~".+"', f'job=~"{job}"')
    r = query(q)
    if r["status"] != "success":
        bad.append(f"{q}: {r.get('error')}")
    elif not r["data"]["result"]:
        empty.append(q)
alerts = {}
for g in yaml.safe_load(open(rules))["groups"]:
    for rule in g["rules"]:
        r = query(rule["expr"])
        if r["status"] != "success":
            bad.append(f"{rule['alert']}: {r.get('error')}")
        alerts[rule["alert"]] = len(r["data"]["result"]) if r["status"] == "success" else None
print(f"    dashboard: {sum(1 for _ in open(queries))} queries ran, {len(empty)} without data yet "
      f"(series that appear with their first event, or not in this version of havoc):")
for q in empty:
    print(f"      {q}")
print(f"    alert expressions (series now): {alerts}")
if bad:
    sys.exit("queries failed:\n  " + "\n  ".join(bad))
must = ["max(havoc_policies", "sum(up", "havoc_health_checks_total", "havoc_kube_requests_total", "havoc_experiments_total{"]
missing = [m for m in must if not any(m in q and q not in empty for q in (json.loads(l).replace('job=~".+"', f'job=~"{job}"') for l in open(queries)))]
if missing:
    sys.exit(f"dashboard panels without data although havoc runs: {missing}")
for quiet in ("HavocDown", "HavocHealthUnreadable", "HavocRevertFailed", "HavocNotificationsDropped"):
    if alerts.get(quiet):
        sys.exit(f"{quiet} fires while havoc is up and well")
EOF
  local rc=$?
  stop "$prom_pid" || true
  return $rc
}

check "image: deploy/image/build, layout (user 65532, /havoc static, CA bundle, no shell)" check_image_build
check "image: podman" check_podman
check "image: havoc from the image, as a pod: cluster DNS names, CA bundle, in-cluster identity; dashboard and alert queries on live data" check_image_run
