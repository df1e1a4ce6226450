#!/usr/bin/env bash
# A real single-node Kubernetes cluster with the real Kubeflow Spark operator, on this machine,
# for the tests (marker `cluster`) and for trying the cluster path by hand (README, "Kubernetes").
#
#   scripts/cluster.sh up       build/check every piece (cached by version), start the cluster,
#                               install the project's k8s/ objects and the operator; idempotent
#   scripts/cluster.sh down     stop everything and remove every trace (also after a failed up)
#   scripts/cluster.sh status   what runs
#   scripts/cluster.sh env      the environment a client needs (KUBECONFIG, LAKEHOUSE_* settings)
#   scripts/cluster.sh kubectl ARGS...   kubectl as the cluster admin
#   scripts/cluster.sh webhook-admits   exit 0 when the operator's webhook admits a SparkApplication
#
# What runs (all upstream programs, nothing faked; versions in lakehouse/versions.py):
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (iptables),
#   CoreDNS as host processes, containerd + runc + the CNI bridge plugin from Debian's packages,
#   the Spark operator controller and webhook as Deployments from the operator's own Helm chart
#   rendered with spark-operator/values.yaml. Pods run the images scripts/images.sh builds.
#   Around them, what a production cluster has around the jobs: a `prefect server`, a Kafka
#   broker (KRaft, scripts/kafka.sh's jars) and an S3 object store (SeaweedFS, scripts/
#   seaweedfs.sh) as processes on the node, behind the Services prefect/prefect-server,
#   kafka/lakehouse-kafka-bootstrap and storage/lakehouse-s3; the work pool (lakehouse blocks)
#   and the Prefect worker Deployment of k8s/overlays/local, from the prefect image.
#
# Isolation (the machine is shared; nothing machine-wide is changed):
#   * every process runs in the network namespace $LAKEHOUSE_CLUSTER_NETNS (default
#     lakehouse-k8s), which has only loopback and the bridge cni0 = $NODE_IP/24 (the node's and
#     the pods' network): no link to the host's network, no route out, so no traffic leaves the
#     machine; kube-proxy's iptables rules and the pods' interfaces live there too;
#   * the API server is reachable from the host only on 127.0.0.1:$LAKEHOUSE_CLUSTER_API_PORT
#     (default 16443), through a socat forwarder into the namespace; likewise the Prefect API
#     on $LAKEHOUSE_CLUSTER_PREFECT_PORT (14200), Kafka on $LAKEHOUSE_CLUSTER_KAFKA_PORT (19092)
#     and S3 on $LAKEHOUSE_CLUSTER_S3_PORT (18333);
#   * the kubelet runs in a mount namespace of its own where the kernel settings it would write
#     (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops) are private files that already
#     hold the values it wants; kube-proxy is told to leave the conntrack settings alone;
#   * containerd's root, state and socket, runc's state, the kubelet's root, pod logs, the CNI
#     IPAM state and all certificates live under $LAKEHOUSE_CLUSTER_DIR (default
#     .lakehouse/cluster); only the shims' sockets go where containerd 1.6 always puts them
#     (/run/containerd/s);
#   * `down` stops every process by the PID it recorded, then the containerd shims of this
#     cluster's socket, removes the shim sockets the cluster made, unmounts everything below the
#     cluster dir, deletes the namespaces the cluster made (its own and the pods'), removes the
#     kubepods cgroups and the cluster dir.
#
# Data: $LAKEHOUSE_CLUSTER_DIR/data is a hostPath PersistentVolume bound to the PVC
# spark-jobs/lake (Pod Security "restricted" refuses hostPath in pods, not behind a PVC); jobs
# mount it at /data (setting kubernetes.volumes) and use LAKEHOUSE_STORAGE__ROOT=/data/lake.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

CLUSTER_DIR="${LAKEHOUSE_CLUSTER_DIR:-$REPO_ROOT/.lakehouse/cluster}"
NETNS="${LAKEHOUSE_CLUSTER_NETNS:-lakehouse-k8s}"
API_PORT="${LAKEHOUSE_CLUSTER_API_PORT:-16443}"
PREFECT_PORT="${LAKEHOUSE_CLUSTER_PREFECT_PORT:-14200}"
KAFKA_PORT="${LAKEHOUSE_CLUSTER_KAFKA_PORT:-19092}"
S3_PORT="${LAKEHOUSE_CLUSTER_S3_PORT:-18333}"
# the longest unix socket below the cluster dir adds 50 characters; the kernel allows 107
MAX_DIR_LEN=57
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.0.0.0/24
KUBERNETES_SVC_IP=10.0.0.1
NODE_NAME=node1
NSE=(nsenter "--net=/run/netns/$NETNS" --)
RUN="$CLUSTER_DIR/run"
LOGS="$CLUSTER_DIR/logs"
PKI="$CLUSTER_DIR/pki"
STATE="$CLUSTER_DIR/state"
# How long a step of `up` may take before it fails with the component's log.
UP_TIMEOUT="${LAKEHOUSE_CLUSTER_UP_TIMEOUT:-300}"

versions() {
  eval "$(python3 - <<'PY'
import runpy, shlex
v = runpy.run_path("lakehouse/versions.py")
for k in ("KUBERNETES_VERSION", "SPARK_OPERATOR_VERSION", "PAUSE_VERSION"):
    print(f"{k}={shlex.quote(v[k])}")
PY
)"
}

# ------------------------------------------------------------------------------------ helpers
pidfile() { echo "$RUN/pids/$1.pid"; }
running() { local f; f=$(pidfile "$1"); [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

launch() {  # NAME CMD... : start in the cluster's network namespace, record the PID
  local name=$1; shift
  mkdir -p "$RUN/pids" "$LOGS"
  if running "$name"; then return 0; fi
  setsid "${NSE[@]}" "$@" >"$LOGS/$name.log" 2>&1 < /dev/null 8>&- &
  echo $! > "$(pidfile "$name")"
}

stop_proc() {  # NAME [grace seconds]
  local f pid i grace=${2:-10}
  f=$(pidfile "$1"); [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

forward() {  # NAME HOST_PORT NODE_PORT : 127.0.0.1:HOST_PORT on the host -> $NODE_IP:NODE_PORT in the namespace
  mkdir -p "$RUN/pids" "$LOGS"
  running "$1" && return 0
  setsid socat "TCP-LISTEN:$2,bind=127.0.0.1,reuseaddr,fork" \
    "EXEC:nsenter --net=/run/netns/$NETNS -- socat STDIO TCP\:$NODE_IP\:$3" \
    >"$LOGS/$1.log" 2>&1 < /dev/null 8>&- &
  echo $! > "$(pidfile "$1")"
}

stop_group() {  # NAME : a process started by launch and every process of its group
  local f pid
  f=$(pidfile "$1"); [ -f "$f" ] || return 0
  pid=$(cat "$f")
  kill -TERM -- "-$pid" 2>/dev/null || true
  stop_proc "$1" 10
  kill -KILL -- "-$pid" 2>/dev/null || true
}

wait_for() {  # WHAT LOGNAME CMD... : retry CMD until it succeeds or UP_TIMEOUT passes
  local what=$1 log=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ -n "$log" ] && ! running "$log"; then
      tail -n 30 "$LOGS/$log.log" >&2 2>/dev/null || true
      die "$log exited while waiting for $what (log: $LOGS/$log.log)"
    fi
    if (( SECONDS - t0 > UP_TIMEOUT )); then
      [ -z "$log" ] || tail -n 30 "$LOGS/$log.log" >&2 2>/dev/null || true
      die "timed out after ${UP_TIMEOUT}s waiting for $what${log:+ (log: $LOGS/$log.log)}"
    fi
    sleep 1
  done
}

kc() { "${NSE[@]}" "$K8S_BIN/kubectl" --kubeconfig "$PKI/admin.kubeconfig" "$@"; }
ctr_() { "${NSE[@]}" ctr --address "$RUN/containerd/containerd.sock" --namespace k8s.io "$@"; }

tools() {
  K8S_BIN=$(scripts/k8s-tools.sh --print-dir)
  CT_BIN=$(scripts/cluster-tools.sh --print-bin-dir)
  CHART_DIR=$(scripts/cluster-tools.sh --print-chart-dir)
}

# ------------------------------------------------------------------------------------ config
write_pki() {
  [ -s "$PKI/admin.kubeconfig" ] && return 0
  mkdir -p "$PKI"; chmod 700 "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 7 \
      -subj "/CN=lakehouse-test-cluster-ca" 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    cert() {  # NAME CN ORG SANS
      local subj="/CN=$2"; [ -z "$3" ] || subj="/O=$3/CN=$2"
      openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$subj" 2>/dev/null
      { echo "basicConstraints=CA:FALSE"; echo "keyUsage=digitalSignature,keyEncipherment"
        if [ -n "$4" ]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$4"
        else echo "extendedKeyUsage=clientAuth"; fi; } > "$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    cert apiserver kube-apiserver "" "IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    cert kubelet-serving "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME"
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
    cert admin lakehouse-cluster-admin system:masters ""
    cert kubelet "system:node:$NODE_NAME" system:nodes ""
    cert scheduler system:kube-scheduler "" ""
    cert controller-manager system:kube-controller-manager "" ""
    cert kube-proxy system:kube-proxy "" ""
    cert coredns lakehouse:coredns "" ""
    chmod 600 ./*.key
  )
  local n server
  for n in admin kubelet scheduler controller-manager kube-proxy coredns; do
    server="https://$NODE_IP:6443"
    kubeconfig "$PKI/$n.kubeconfig" "$server" "$n"
  done
  # the admin's kubeconfig for programs on the host (through the loopback forwarder)
  kubeconfig "$PKI/admin-host.kubeconfig" "https://127.0.0.1:$API_PORT" admin
}

kubeconfig() {  # FILE SERVER CERTNAME
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: lakehouse-test, cluster: {server: "$2", certificate-authority: $PKI/ca.crt}}]
users: [{name: $3, user: {client-certificate: $PKI/$3.crt, client-key: $PKI/$3.key}}]
contexts: [{name: lakehouse-test, context: {cluster: lakehouse-test, user: $3}}]
current-context: lakehouse-test
EOF
  chmod 600 "$1"
}

# stdin -> FILE, only when the content differs (running components watch their config files)
put() {
  local tmp; tmp=$(mktemp "$1.XXXXXX")
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_config() {
  mkdir -p "$CLUSTER_DIR/etc/cni" "$STATE/kubelet" "$STATE/pod-logs" "$STATE/cni-ipam" \
    "$STATE/sysctl" "$CLUSTER_DIR/data" "$RUN/containerd"
  put "$CLUSTER_DIR/etc/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$RUN/containerd/state"
[grpc]
  address = "$RUN/containerd/containerd.sock"
[ttrpc]
  address = "$RUN/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/lakehouse-pause:$PAUSE_VERSION"
  enable_selinux = false
  # root here may lack CAP_SYS_RESOURCE and then cannot lower oom_score_adj (a pod sandbox asks
  # for -998): keep the scores at or above containerd's own instead of failing every sandbox
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's container state below the cluster dir, not in the machine's /run/containerd
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CLUSTER_DIR/etc/cni"
EOF
  put "$CLUSTER_DIR/etc/cni/10-lakehouse.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "lakehouse-pods",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true,
     "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$STATE/cni-ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.244.0.10", "gateway": "$NODE_IP"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
  # pods resolve cluster names through CoreDNS on the node IP; nothing else resolves
  printf 'nameserver %s\nsearch cluster.local\n' "$NODE_IP" | put "$CLUSTER_DIR/etc/node-resolv.conf"
  put "$CLUSTER_DIR/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# this machine has cgroup v1; kubelet $KUBERNETES_VERSION still runs on it when told so
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$RUN/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $CLUSTER_DIR/etc/node-resolv.conf
podLogsDir: $STATE/pod-logs
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
failSwapOn: false
serializeImagePulls: false
protectKernelDefaults: false
# the node is this shared machine: only evict when it is really short
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%", nodefs.inodesFree: "2%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
EOF
  put "$CLUSTER_DIR/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $PKI/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# zero: leave the (machine-wide) conntrack settings alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  put "$CLUSTER_DIR/etc/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $PKI/coredns.kubeconfig lakehouse-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loop
    loadbalance
}
EOF
}

# ------------------------------------------------------------------------------------ network
net_up() {
  ip netns list | awk '{print $1}' | grep -x "$NETNS" >/dev/null || ip netns add "$NETNS"
  # the namespaces that exist before the cluster: `down` deletes only pod namespaces made after
  ip netns list | awk '{print $1}' | sort > "$RUN/netns-before" 2>/dev/null || true
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" link show cni0 >/dev/null 2>&1 || ip -n "$NETNS" link add cni0 type bridge
  ip -n "$NETNS" addr show cni0 | grep "$NODE_IP/24" >/dev/null || ip -n "$NETNS" addr add "$NODE_IP/24" dev cni0
  ip -n "$NETNS" link set cni0 up
  # per-namespace settings (this namespace only): forwarding between pods and Service DNAT
  "${NSE[@]}" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
  # ClusterIPs for processes of the namespace itself (the API server calling the webhook Service)
  ip -n "$NETNS" route show "$SERVICE_CIDR" | grep . >/dev/null \
    || ip -n "$NETNS" route add "$SERVICE_CIDR" dev cni0 src "$NODE_IP"
}

# ------------------------------------------------------------------------------------ components
start_containerd() {
  # containerd's shims put their sockets in /run/containerd/s (fixed in containerd 1.6): note
  # what is there before, so that `down` removes exactly the ones this cluster made
  mkdir -p "$RUN"
  [ -e "$RUN/shim-sockets-before" ] || { [ -d /run/containerd ] && echo yes || echo no; } > "$RUN/run-containerd-existed"
  [ -e "$RUN/shim-sockets-before" ] || ls -1 /run/containerd/s 2>/dev/null | sort > "$RUN/shim-sockets-before" || true
  launch containerd containerd --config "$CLUSTER_DIR/etc/containerd.toml"
  wait_for "containerd" containerd ctr_ version
}

import_images() {
  local name tar t0=$SECONDS
  touch "$RUN/imported"
  for name in pause spark operator prefect; do
    tar=$(scripts/images.sh --export "$name" "$LAKEHOUSE_CACHE_DIR/images")
    grep -qxF "$tar" "$RUN/imported" && continue
    ctr_ images import "$tar" >/dev/null || die "importing $tar into containerd failed"
    echo "$tar" >> "$RUN/imported"
  done
  say "images imported in $((SECONDS - t0))s"
}

start_control_plane() {
  launch etcd "$K8S_BIN/etcd" --name=lakehouse --data-dir="$STATE/etcd" \
    --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
    --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
    --initial-cluster=lakehouse=http://127.0.0.1:2380 --unsafe-no-fsync --log-level=warn
  launch apiserver "$K8S_BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC --service-cluster-ip-range="$SERVICE_CIDR" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-preferred-address-types=InternalIP --profiling=false
  wait_for "the API server" apiserver kc get --raw /readyz
  # the host's door to the API server: 127.0.0.1:$API_PORT -> $NODE_IP:6443 in the namespace
  forward api-forward "$API_PORT" 6443
  launch controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$PKI/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$PKI/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$PKI/controller-manager.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=10257 \
    --use-service-account-credentials=true --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" --cluster-signing-cert-file="$PKI/ca.crt" \
    --cluster-signing-key-file="$PKI/ca.key" --service-cluster-ip-range="$SERVICE_CIDR" \
    --controllers='*,-nodeipam'
  launch scheduler "$K8S_BIN/kube-scheduler" --kubeconfig="$PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig="$PKI/scheduler.kubeconfig" \
    --authorization-kubeconfig="$PKI/scheduler.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=10259
}

# The kubelet in a mount namespace of its own: /proc/sys/{vm/overcommit_memory,kernel/panic,
# kernel/panic_on_oops} there are private files that already read what the kubelet wants, so
# it never writes the machine's. Its root dir is a shared bind mount, so the volumes it mounts
# there still reach containerd and runc in the host's mount namespace.
kubelet_inner() {
  local kv key value file
  for kv in vm/overcommit_memory=1 kernel/panic=10 kernel/panic_on_oops=1; do
    key=${kv%=*}; value=${kv#*=}; file="$STATE/sysctl/${key//\//_}"
    echo "$value" > "$file"
    mount --bind "$file" "/proc/sys/$key"
  done
  exec "$K8S_BIN/kubelet" --config="$CLUSTER_DIR/etc/kubelet.yaml" \
    --kubeconfig="$PKI/kubelet.kubeconfig" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
    --root-dir="$STATE/kubelet" -v=1
}

start_node() {
  mountpoint -q "$STATE/kubelet" || { mount --bind "$STATE/kubelet" "$STATE/kubelet"; mount --make-shared "$STATE/kubelet"; }
  launch kubelet unshare --mount --propagation unchanged "$0" _kubelet
  launch kube-proxy "$K8S_BIN/kube-proxy" --config="$CLUSTER_DIR/etc/kube-proxy.yaml"
  wait_for "node $NODE_NAME Ready" kubelet \
    kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  # CoreDNS reads Services, EndpointSlices, Namespaces and Pods through its own identity
  kc apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: lakehouse:coredns}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: lakehouse:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "lakehouse:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "lakehouse:coredns"}]
EOF
  launch coredns "$CT_BIN/coredns" -conf "$CLUSTER_DIR/etc/Corefile"
  wait_for "CoreDNS ready" coredns "${NSE[@]}" python3 -c \
    'import urllib.request; urllib.request.urlopen("http://127.0.0.1:18181/ready", timeout=2)'
}

install_project() {
  local kustomize
  kustomize=$(scripts/kustomize.sh)
  "$kustomize" build k8s | kc apply -f - >/dev/null
  # the data PersistentVolume (hostPath behind a PVC, which Pod Security "restricted" allows)
  chown 185:185 "$CLUSTER_DIR/data"
  mkdir -p "$CLUSTER_DIR/metastore"; chown 185:185 "$CLUSTER_DIR/metastore"
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: lakehouse-data}
spec:
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: lakehouse-local
  hostPath: {path: "$CLUSTER_DIR/data", type: Directory}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: lake, namespace: spark-jobs}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: lakehouse-local
  volumeName: lakehouse-data
  resources: {requests: {storage: 20Gi}}
---
# the Derby metastore of dbt's Spark Connect server (spark-operator/dbt: its PVC
# spark-jobs/lakehouse-metastore binds here), when that server is applied
apiVersion: v1
kind: PersistentVolume
metadata: {name: lakehouse-metastore}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {namespace: spark-jobs, name: lakehouse-metastore}
  hostPath: {path: "$CLUSTER_DIR/metastore", type: Directory}
EOF
}

install_operator() {
  local image
  image=$(scripts/images.sh --ref operator)
  kc apply --server-side -f "$CHART_DIR/crds/" >/dev/null
  kc wait --for=condition=Established crd --all --timeout=60s >/dev/null
  kc get namespace spark-operator >/dev/null 2>&1 || kc create namespace spark-operator >/dev/null
  # the chart as shipped + the project's values; only the image is this machine's own build
  "$CT_BIN/helm" template spark-operator "$CHART_DIR" --namespace spark-operator \
    -f spark-operator/values.yaml \
    --set "image.registry=localhost" --set "image.repository=$(ref_name "${image#localhost/}")" \
    --set "image.tag=${image##*:}" --set "image.pullPolicy=IfNotPresent" > "$CLUSTER_DIR/etc/operator.yaml" \
    || die "helm template of the operator chart failed"
  # helm template leaves metadata.namespace unset where `helm install` would use the release's
  # namespace: fill it in (objects for the job namespaces already name theirs)
  "$REPO_ROOT/.venv/bin/python" - "$CLUSTER_DIR/etc/operator.yaml" <<'PY' || die "cannot read the rendered chart"
import sys, yaml
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace",
                  "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "PriorityClass"}
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if d["kind"] not in CLUSTER_SCOPED:
        d.setdefault("metadata", {}).setdefault("namespace", "spark-operator")
open(sys.argv[1], "w").write(yaml.safe_dump_all(docs, sort_keys=False))
PY
  kc apply -f "$CLUSTER_DIR/etc/operator.yaml" >/dev/null
  wait_for "the Spark operator controller" kubelet \
    kc -n spark-operator rollout status deployment/spark-operator-controller --timeout=5s
  wait_for "the Spark operator webhook" kubelet \
    kc -n spark-operator rollout status deployment/spark-operator-webhook --timeout=5s
  # ready = the webhook has written its CA into both webhook configurations and answers
  wait_for "the webhook's CA bundle" "" webhook_ca_ready
  wait_for "the webhook to admit a SparkApplication" "" webhook_admits
}

# The Prefect server of the cluster's flow runs: a host process on the node (in the namespace,
# on $NODE_IP:4200, its database under the cluster dir), the Service prefect/prefect-server in
# front of it for the pods (PREFECT_API_URL of k8s/worker), 127.0.0.1:$PREFECT_PORT for the host.
prefect_api() { echo "http://127.0.0.1:$PREFECT_PORT/api"; }

prefect_healthy() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=3)' "$(prefect_api)"
}

start_prefect() {
  mkdir -p "$STATE/prefect"
  # a clean environment: nothing of the caller's Prefect profile or test harness leaks in
  launch prefect-server env -i PATH="$PATH" HOME="$STATE/prefect" LANG=C.UTF-8 \
    PREFECT_HOME="$STATE/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_API_DATABASE_CONNECTION_URL="sqlite+aiosqlite:///$STATE/prefect/prefect.db" \
    PREFECT_SERVER_API_HOST="$NODE_IP" PREFECT_SERVER_API_PORT=4200 \
    PREFECT_UI_API_URL="$(prefect_api)" \
    "$REPO_ROOT/.venv/bin/prefect" server start --host "$NODE_IP" --port 4200
  forward prefect-forward "$PREFECT_PORT" 4200
  wait_for "the Prefect server" prefect-server prefect_healthy
}

# The Kafka broker of the cluster (scripts/kafka.sh's jars, KRaft): on the node, in the
# namespace. Listener PODS on $NODE_IP:9092 for the pods, behind the Service
# kafka/lakehouse-kafka-bootstrap (the bootstrap of k8s/worker's settings); listener PLAINTEXT
# on $NODE_IP:9094, advertised as 127.0.0.1:$KAFKA_PORT, the forwarder's port on the host.
kafka_ready() {
  "$REPO_ROOT/.venv/bin/python" -c 'import sys
from confluent_kafka.admin import AdminClient
AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=3)' "127.0.0.1:$KAFKA_PORT"
}

start_kafka() {
  local cmd
  mapfile -t cmd < <(scripts/kafka.sh prepare --port 9094 --controller-port 9093 \
    --data-dir "$STATE/kafka" --listen "$NODE_IP" --advertise "127.0.0.1:$KAFKA_PORT" \
    --pods "$NODE_IP:9092" --quiet)
  [ "${#cmd[@]}" -gt 3 ] || die "scripts/kafka.sh prepare failed (run scripts/kafka.sh install)"
  launch kafka "${cmd[@]}"
  forward kafka-forward "$KAFKA_PORT" 9094
  wait_for "the Kafka broker" kafka kafka_ready
}

# The object store of the cluster: SeaweedFS (scripts/seaweedfs.sh's weed, authentication on)
# on the node, in the namespace, its S3 gateway on $NODE_IP:8333 behind the Service
# storage/lakehouse-s3 for the pods and 127.0.0.1:$S3_PORT for the host. Its one identity's
# key pair is made at `up` ($PKI/s3-keys.json, mode 0600; `down` removes it) and given to the pods as the
# Secret lakehouse-credentials (deploy.credentials_secret) of the namespaces spark-jobs (the
# jobs) and prefect (the flow runs), never as a value.
s3_ready() {
  "$REPO_ROOT/.venv/bin/python" -m lakehouse.testing.s3_server ready \
    --endpoint "http://127.0.0.1:$S3_PORT" --keys "$PKI/s3-keys.json"
}

start_s3() {
  local cmd
  mapfile -t cmd < <("$REPO_ROOT/.venv/bin/python" -m lakehouse.testing.s3_server prepare \
    --ip "$NODE_IP" --port 8333 --data-dir "$STATE/s3" --keys "$PKI/s3-keys.json")
  [ "${#cmd[@]}" -gt 3 ] || die "lakehouse.testing.s3_server prepare failed (run scripts/seaweedfs.sh install)"
  # no WEED_* of the caller's environment, HOME in its state dir: nothing of the machine's
  # SeaweedFS configuration reaches it
  launch s3 env -i PATH="$PATH" HOME="$STATE/s3" LANG=C.UTF-8 "${cmd[@]}"
  forward s3-forward "$S3_PORT" 8333
  wait_for "the S3 gateway" s3 s3_ready
}

s3_secret() {  # the key pair as the Secret lakehouse-credentials of the jobs' and the flow runs' namespaces
  local d
  d=$(mktemp -d); chmod 700 "$d"
  python3 - "$PKI/s3-keys.json" "$d" <<'PY'
import json, os, sys
keys = json.load(open(sys.argv[1]))
for name, key in (("object-store-access-key-id", "access_key"), ("object-store-secret-access-key", "secret_key")):
    fd = os.open(os.path.join(sys.argv[2], name), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, keys[key].encode()); os.close(fd)
PY
  local ns
  for ns in spark-jobs prefect; do
    kc -n "$ns" create secret generic lakehouse-credentials \
      --from-file="$d/object-store-access-key-id" --from-file="$d/object-store-secret-access-key" \
      --dry-run=client -o yaml | kc apply -f - >/dev/null
  done
  rm -rf "$d"
}

node_service() {  # NAMESPACE NAME PORT : a Service whose one endpoint is $NODE_IP:PORT
  kc get namespace "$1" >/dev/null 2>&1 || kc create namespace "$1" >/dev/null
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: $2, namespace: $1, labels: {app.kubernetes.io/part-of: lakehouse}}
spec: {ports: [{name: main, port: $3, targetPort: $3, protocol: TCP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $2-node
  namespace: $1
  labels: {kubernetes.io/service-name: $2, endpointslice.kubernetes.io/managed-by: lakehouse}
addressType: IPv4
ports: [{name: main, port: $3, protocol: TCP}]
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
EOF
}

# The work pool, blocks and variable of the flow runs (`lakehouse blocks` with this cluster's
# settings), then the Prefect worker Deployment of k8s/overlays/local, with the image tags built
# here set in a copy of k8s/.
install_prefect() {
  local kustomize spark prefect
  kustomize=$(scripts/kustomize.sh)
  spark=$(scripts/images.sh --ref spark); prefect=$(scripts/images.sh --ref prefect)
  env -i PATH="$PATH" HOME="$STATE/prefect" LANG=C.UTF-8 PREFECT_HOME="$STATE/prefect-client" \
    PREFECT_API_URL="$(prefect_api)" PREFECT_SERVER_ANALYTICS_ENABLED=false \
    LAKEHOUSE_BACKEND=kubernetes LAKEHOUSE_DEPLOY__WORK_POOL=lakehouse-kubernetes \
    LAKEHOUSE_DEPLOY__PREFECT_IMAGE="$prefect" LAKEHOUSE_STORAGE__ROOT=/data/lake \
    LAKEHOUSE_RESULTS_DIR=/tmp/prefect-results \
    LAKEHOUSE_DEPLOY__FLOW_CPU_REQUEST=250m LAKEHOUSE_DEPLOY__FLOW_MEMORY_REQUEST=512Mi \
    "$REPO_ROOT/.venv/bin/python" -m lakehouse.cli blocks > "$LOGS/blocks.log" 2>&1 \
    || { tail -n 20 "$LOGS/blocks.log" >&2; die "lakehouse blocks against the cluster's Prefect server failed (log: $LOGS/blocks.log)"; }
  rm -rf "$CLUSTER_DIR/etc/k8s"; cp -r k8s "$CLUSTER_DIR/etc/k8s"
  (
    cd "$CLUSTER_DIR/etc/k8s/overlays/local"
    "$kustomize" edit set image "lakehouse-prefect=$prefect"
    "$kustomize" edit set configmap lakehouse-settings --namespace prefect \
      --from-literal "LAKEHOUSE_KUBERNETES__IMAGE=$spark"
  ) || die "kustomize edit of the local overlay failed"
  "$kustomize" build "$CLUSTER_DIR/etc/k8s/overlays/local" | kc apply -f - >/dev/null
  node_service prefect prefect-server 4200
  node_service kafka lakehouse-kafka-bootstrap 9092
  node_service storage lakehouse-s3 8333
  s3_secret
  wait_for "the Prefect worker" kubelet \
    kc -n prefect rollout status deployment/prefect-worker --timeout=5s
}

ref_name() { echo "${1%:*}"; }

webhook_ca_ready() {
  local m v
  m=$(kc get mutatingwebhookconfigurations -o jsonpath='{.items[*].webhooks[*].clientConfig.caBundle}')
  v=$(kc get validatingwebhookconfigurations -o jsonpath='{.items[*].webhooks[*].clientConfig.caBundle}')
  [ -n "$m" ] && [ -n "$v" ]
}

webhook_admits() {
  kc create --dry-run=server -f - <<EOF
apiVersion: sparkoperator.k8s.io/v1beta2
kind: SparkApplication
metadata: {name: admission-probe, namespace: spark-jobs}
spec:
  type: Python
  mode: cluster
  sparkVersion: "4.1.1"
  image: probe
  mainApplicationFile: local:///probe.py
  driver: {serviceAccount: spark-driver}
  executor: {instances: 1}
EOF
}

write_env() {
  local image
  image=$(scripts/images.sh --ref spark)
  # the Prefect worker's identity: a token of ServiceAccount prefect/prefect-worker, so the
  # project's own RBAC is what a client of this file is allowed
  local token
  token=$(kc -n prefect create token prefect-worker --duration=24h)
  cat > "$PKI/prefect-worker.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: lakehouse-test, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: $PKI/ca.crt}}]
users: [{name: prefect-worker, user: {token: "$token"}}]
contexts: [{name: lakehouse-test, context: {cluster: lakehouse-test, user: prefect-worker, namespace: spark-jobs}}]
current-context: lakehouse-test
EOF
  chmod 600 "$PKI/prefect-worker.kubeconfig"
  cat > "$CLUSTER_DIR/env" <<EOF
# written by scripts/cluster.sh up: source it to use the test cluster as the Prefect worker would
export KUBECONFIG=$PKI/prefect-worker.kubeconfig
export LAKEHOUSE_CLUSTER_ADMIN_KUBECONFIG=$PKI/admin-host.kubeconfig
export LAKEHOUSE_CLUSTER_DATA_DIR=$CLUSTER_DIR/data
export LAKEHOUSE_BACKEND=kubernetes
export LAKEHOUSE_KUBERNETES__IMAGE=$image
export LAKEHOUSE_KUBERNETES__IMAGE_PULL_POLICY=IfNotPresent
# small data and short jobs on a 2-core node: the Spark pods' JVMs on C1 only
export LAKEHOUSE_KUBERNETES__JIT=c1
export LAKEHOUSE_KUBERNETES__VOLUMES='[{"name": "lake", "claim_name": "lake", "mount_path": "/data"}]'
export LAKEHOUSE_STORAGE__ROOT=/data/lake
# the Prefect server of the flow runs on the cluster (the worker pod polls it)
export LAKEHOUSE_CLUSTER_PREFECT_API_URL=$(prefect_api)
export LAKEHOUSE_CLUSTER_PREFECT_IMAGE=$(scripts/images.sh --ref prefect)
# the Kafka broker the pods read (kafka/lakehouse-kafka-bootstrap:9092), from the host
export LAKEHOUSE_CLUSTER_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
# the object store: the pods' endpoint, and the host's door to it with the key pair's file
export LAKEHOUSE_CLUSTER_S3_POD_ENDPOINT=http://lakehouse-s3.storage.svc.cluster.local:8333
export LAKEHOUSE_CLUSTER_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export LAKEHOUSE_CLUSTER_S3_KEYS=$PKI/s3-keys.json
EOF
}

# ------------------------------------------------------------------------------------ commands
up() {
  [ "$(id -u)" = 0 ] || die "the test cluster needs root (network and mount namespaces, cgroups)"
  local c t0=$SECONDS
  for c in containerd runc nsenter unshare ip iptables socat openssl mountpoint; do
    command -v "$c" >/dev/null 2>&1 || die "$c not found: run scripts/cluster-setup.sh (Debian packages)"
  done
  [ -x /usr/lib/cni/bridge ] || die "the CNI plugins are missing: run scripts/cluster-setup.sh"
  versions
  scripts/k8s-tools.sh >/dev/null
  scripts/cluster-tools.sh >/dev/null
  scripts/kafka.sh install >/dev/null
  scripts/seaweedfs.sh install >/dev/null
  tools
  scripts/images.sh pause spark operator prefect
  # unix sockets live below the cluster dir (containerd's, the kubelet's device-plugin socket
  # state/kubelet/device-plugins/kubelet.sock): their paths must fit the kernel's 108 bytes
  (( ${#CLUSTER_DIR} <= MAX_DIR_LEN )) \
    || die "the cluster dir $CLUSTER_DIR is longer than $MAX_DIR_LEN characters, too long for the unix sockets below it: set LAKEHOUSE_CLUSTER_DIR to a shorter path"
  mkdir -p "$RUN/pids" "$LOGS"
  exec 8>"$CLUSTER_DIR/.lock"; flock -n 8 || die "another scripts/cluster.sh runs on $CLUSTER_DIR"
  say "starting the test cluster in $CLUSTER_DIR (network namespace $NETNS)"
  write_pki
  write_config
  net_up
  start_containerd
  import_images
  start_control_plane
  start_node
  install_project
  install_operator
  start_prefect
  start_kafka
  start_s3
  install_prefect
  write_env
  say "cluster up in $((SECONDS - t0))s: source $CLUSTER_DIR/env (API on 127.0.0.1:$API_PORT)"
}

down() {
  local t0=$SECONDS
  versions
  tools 2>/dev/null || true
  if [ -d "$CLUSTER_DIR" ]; then
    if running apiserver && [ -x "${K8S_BIN:-}/kubectl" ]; then
      # let the kubelet stop the workloads, so runc stops the containers and CNI frees their IPs
      kc delete sparkapplications,scheduledsparkapplications,sparkconnects --all -A --wait=false >/dev/null 2>&1 || true
      kc delete deployments --all -n spark-operator --wait=false >/dev/null 2>&1 || true
      kc delete pods --all -A --grace-period=3 --wait=true --timeout=60s >/dev/null 2>&1 || true
    fi
    stop_proc api-forward
    stop_proc prefect-forward
    stop_group prefect-server
    stop_proc kafka-forward
    stop_proc kafka 20
    stop_proc s3-forward
    stop_group s3
    local n
    for n in coredns kube-proxy kubelet scheduler controller-manager; do stop_proc "$n"; done
    if running containerd; then
      local t
      for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
      sleep 1
    fi
    stop_proc containerd
    # the shims of this cluster's containerd (their -address is its socket), by PID
    local p
    for p in $(pgrep -f containerd-shim 2>/dev/null); do
      if tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -F "$RUN/containerd/containerd.sock" >/dev/null; then
        kill -KILL "$p" 2>/dev/null || true
      fi
    done
    # the shims' sockets this cluster made in /run/containerd/s (and that directory, if it did not
    # exist before the cluster)
    if [ -f "$RUN/shim-sockets-before" ] && [ -d /run/containerd/s ]; then
      local sock
      for sock in $(ls -1 /run/containerd/s | sort | comm -13 "$RUN/shim-sockets-before" -); do
        rm -f "/run/containerd/s/$sock"
      done
      if [ "$(cat "$RUN/run-containerd-existed" 2>/dev/null)" = no ]; then
        rmdir /run/containerd/s 2>/dev/null || true
        rm -rf /run/containerd/runc/k8s.io 2>/dev/null || true
        rmdir /run/containerd/runc /run/containerd 2>/dev/null || true
      fi
    fi
    stop_proc apiserver
    stop_proc etcd
    # mounts below the cluster dir, deepest first
    local m
    for m in $(awk -v d="$CLUSTER_DIR/" 'index($2, d) == 1 || $2 == substr(d, 1, length(d) - 1) {print $2}' /proc/self/mounts | sort -r); do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    # pod network namespaces made while the cluster ran
    if [ -f "$RUN/netns-before" ]; then
      local ns
      for ns in $(ip netns list | awk '{print $1}' | grep '^cni-' | sort | comm -13 "$RUN/netns-before" -); do
        ip netns delete "$ns" 2>/dev/null || true
      done
    fi
  fi
  ip netns list | awk '{print $1}' | grep -x "$NETNS" >/dev/null && ip netns delete "$NETNS"
  # the kubepods cgroups the kubelet made in the existing v1 hierarchies (empty by now)
  local h
  for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "$CLUSTER_DIR"
  say "cluster down in $((SECONDS - t0))s"
}

status() {
  local n
  for n in containerd etcd apiserver api-forward controller-manager scheduler kubelet kube-proxy coredns prefect-server prefect-forward kafka kafka-forward s3 s3-forward; do
    if running "$n"; then echo "$n: running (pid $(cat "$(pidfile "$n")"))"; else echo "$n: stopped"; fi
  done
  if running apiserver; then tools; kc get nodes,pods -A -o wide 2>&1 || true; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) cat "$CLUSTER_DIR/env" ;;
  kubectl) shift; tools; kc "$@" ;;
  webhook-admits) tools; webhook_admits >/dev/null ;;
  _kubelet) versions; tools; kubelet_inner ;;
  -h|--help|"") sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
  *) die "unknown command '$1' (try --help)" ;;
esac
