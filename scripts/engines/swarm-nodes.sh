#!/usr/bin/env bash
# Two extra Docker engines on this machine, each in a network namespace of its own, formed into
# one Swarm (node2 manager, node3 worker), for the multi-node tests. Run as root.
#
#   scripts/engines/swarm-nodes.sh up [IMAGE...]   start (idempotent), join, load images
#   scripts/engines/swarm-nodes.sh status          one line per node; exit 1 if not all up
#   scripts/engines/swarm-nodes.sh down            remove everything `up` made
#
# Images to load into both nodes: the arguments, else $SWARM_NODES_IMAGES (space separated).
# Everything it makes is its own: netns orch-node2/orch-node3, bridge orch-br0 (no host
# address), 10.99.0.2 and 10.99.0.3 on the nodes, engine-local pools in 10.96.0.0/14, sockets
# /run/orch-node{2,3}.sock, state under $SWARM_NODES_STATE (default /var/lib/orch-nodes), and
# the shared directory $SWARM_NODES_STATE/shared bind-mountable at the same path on both nodes
# (the stand-in for NFS). The main engine is not touched.
set -euo pipefail

STATE=${SWARM_NODES_STATE:-/var/lib/orch-nodes}
BRIDGE=orch-br0
NODES=(2 3)
SUBNET_PREFIX=10.99.0
RULE=(DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT)

die() { echo "swarm-nodes: $*" >&2; exit 1; }
name() { echo "orch-node$1"; }
sock() { echo "/run/$(name "$1").sock"; }
ndocker() { local n=$1; shift; docker -H "unix://$(sock "$n")" "$@"; }
pidof_node() { local f="/run/$(name "$1").pid"; [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }

need_tools() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (it makes namespaces, a bridge and daemons)"
  for tool in ip iptables nsenter dockerd docker; do
    command -v "$tool" >/dev/null || die "$tool is missing; install iproute2, iptables, util-linux, docker.io"
  done
  # The nodes use the main engine's storage driver (fuse-overlayfs here, where kernel overlay
  # under dockerd is not available), so what works there works on them.
  DRIVER=${SWARM_NODES_STORAGE_DRIVER:-$(docker info --format '{{.Driver}}' 2>/dev/null || true)}
  [ -n "$DRIVER" ] || die "the main engine does not answer; start dockerd or set SWARM_NODES_STORAGE_DRIVER"
  if [ "$DRIVER" = fuse-overlayfs ] && ! command -v fuse-overlayfs >/dev/null; then
    die "fuse-overlayfs is missing; apt-get install fuse-overlayfs"
  fi
}

make_network() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip link set "$BRIDGE" up
  iptables -C "${RULE[@]}" 2>/dev/null || iptables -I "${RULE[@]}"
  for n in "${NODES[@]}"; do
    local ns; ns=$(name "$n")
    [ -e "/run/netns/$ns" ] || ip netns add "$ns"
    if ! ip link show "orch-v$n" >/dev/null 2>&1; then
      ip link add "orch-v$n" type veth peer name eth0 netns "$ns"
      ip link set "orch-v$n" master "$BRIDGE" up
    fi
    ip -n "$ns" addr replace "$SUBNET_PREFIX.$n/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
}

write_config() {
  local n=$1 dir="$STATE/$(name "$1")"
  mkdir -p "$dir/data"
  # Own file (flags clash with /etc/docker/daemon.json), own address pools inside the netns.
  cat >"$dir/daemon.json" <<EOF
{"data-root": "$dir/data", "storage-driver": "$DRIVER", "mtu": 1400,
 "bip": "10.97.$n.1/24",
 "default-address-pools": [{"base": "10.96.$((n * 16)).0/20", "size": 24}],
 "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}
EOF
}

start_engine() {
  local n=$1 ns; ns=$(name "$1")
  if pidof_node "$n" >/dev/null; then return; fi
  write_config "$n"
  # nsenter, not `ip netns exec`: the latter remounts /sys and dockerd then fails with
  # "Devices cgroup isn't mounted".
  nsenter --net="/run/netns/$ns" setsid dockerd --config-file "$STATE/$ns/daemon.json" \
    --exec-root "/run/$ns" -H "unix://$(sock "$n")" --pidfile "/run/$ns.pid" \
    --cgroup-parent "$ns" >"$STATE/$ns/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 60); do ndocker "$n" info >/dev/null 2>&1 && return; sleep 0.5; done
  tail -20 "$STATE/$ns/dockerd.log" >&2
  die "the engine $ns did not answer on $(sock "$n"); see $STATE/$ns/dockerd.log"
}

swarm_state() { ndocker "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }

form_swarm() {
  local manager=${NODES[0]} worker=${NODES[1]}
  if [ "$(swarm_state "$manager")" != active ]; then
    ndocker "$manager" swarm init --advertise-addr "$SUBNET_PREFIX.$manager" \
      --listen-addr "$SUBNET_PREFIX.$manager:2377" \
      --default-addr-pool 10.98.0.0/16 --default-addr-pool-mask-length 24 >/dev/null
  fi
  if [ "$(swarm_state "$worker")" != active ]; then
    local token; token=$(ndocker "$manager" swarm join-token -q worker)
    ndocker "$worker" swarm join --advertise-addr "$SUBNET_PREFIX.$worker" \
      --listen-addr "$SUBNET_PREFIX.$worker:2377" --token "$token" "$SUBNET_PREFIX.$manager:2377" >/dev/null
  fi
  for _ in $(seq 60); do
    [ "$(ndocker "$manager" node ls --format '{{.Status}}' | grep -c Ready)" -eq "${#NODES[@]}" ] && return
    sleep 0.5
  done
  die "the swarm did not show ${#NODES[@]} Ready nodes; see 'docker -H unix://$(sock "$manager") node ls'"
}

load_images() {
  local images=("$@")
  [ ${#images[@]} -gt 0 ] || read -r -a images <<<"${SWARM_NODES_IMAGES:-}"
  for image in "${images[@]}"; do
    local id; id=$(docker image inspect --format '{{.Id}}' "$image") \
      || die "the image $image is not in the main engine; build or pull it first"
    for n in "${NODES[@]}"; do
      [ "$(ndocker "$n" image inspect --format '{{.Id}}' "$image" 2>/dev/null)" = "$id" ] && continue
      docker save "$image" | ndocker "$n" load >/dev/null
    done
  done
}

up() {
  need_tools
  mkdir -p "$STATE/shared"
  make_network
  for n in "${NODES[@]}"; do start_engine "$n"; done
  form_swarm
  load_images "$@"
  status
}

stop_engine() {
  local n=$1 ns pid; ns=$(name "$1")
  if pid=$(pidof_node "$n"); then
    local started=$SECONDS
    kill "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "swarm-nodes: $ns did not stop in 30 s; killing it" >&2
      kill -9 "$pid"
    fi
    echo "swarm-nodes: $ns stopped in $((SECONDS - started)) s"
  fi
  # Whatever the engine left mounted (fuse-overlayfs layers, sandbox namespaces), deepest first.
  { findmnt -rn -o TARGET | grep -E "^($STATE/$ns|/run/$ns)(/|$)" || true; } | sort -r | xargs -r umount -l
  rm -rf "/run/$ns" "/run/$ns.pid" "$(sock "$n")" "$STATE/$ns"
}

down() {
  # The worker first: stopped after its manager, it keeps trying to reach it for ~25 s.
  for ((i = ${#NODES[@]} - 1; i >= 0; i--)); do stop_engine "${NODES[i]}"; done
  for n in "${NODES[@]}"; do
    if ip link show "orch-v$n" >/dev/null 2>&1; then ip link del "orch-v$n"; fi
    if [ -e "/run/netns/$(name "$n")" ]; then ip netns del "$(name "$n")"; fi
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  while iptables -C "${RULE[@]}" 2>/dev/null; do iptables -D "${RULE[@]}"; done
  rm -rf "$STATE"
  echo "swarm-nodes: down"
}

status() {
  local ok=0
  for n in "${NODES[@]}"; do
    local pid; pid=$(pidof_node "$n" || true)
    if [ -n "$pid" ]; then
      echo "$(name "$n") pid=$pid addr=$SUBNET_PREFIX.$n sock=$(sock "$n") swarm=$(swarm_state "$n" || echo none)"
    else
      echo "$(name "$n") down"; ok=1
    fi
  done
  echo "shared=$STATE/shared"
  return $ok
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up [IMAGE...] | down | status" ;;
esac
