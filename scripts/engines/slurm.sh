#!/usr/bin/env bash
# A one-node SLURM cluster on this machine from Debian's packages, for the SLURM tests. Root.
#
#   scripts/engines/slurm.sh up       install slurm-wlm and munge if missing, configure, start,
#                                     wait for the node to be idle (idempotent)
#   scripts/engines/slurm.sh status   sinfo's view; exit 1 when the daemons are not up
#   scripts/engines/slurm.sh down     stop slurmctld, slurmd and munged; remove the state
#
# It writes /etc/slurm/slurm.conf only when there is none or the one there is its own (first
# line starts "# orch-slurm"), and removes it on `down`. State, logs and pid files: $SLURM_STATE
# (default /var/lib/orch-slurm) and /run/orch-slurm. Accounting without slurmdbd: the job
# completion plugin jobcomp/filetxt, read with `sacct --completion` (plain `sacct` needs
# slurmdbd); see docs/test-clusters.md.
set -euo pipefail

STATE=${SLURM_STATE:-/var/lib/orch-slurm}
RUN=/run/orch-slurm
CONF=/etc/slurm/slurm.conf
MARK="# orch-slurm"

die() { echo "slurm: $*" >&2; exit 1; }
ours() { head -1 "$CONF" 2>/dev/null | grep -q "^$MARK"; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
  if [ -f "$CONF" ] && ! ours; then
    die "$CONF exists and is not this script's; move it away or use that cluster"
  fi
  local host node
  host=$(hostname -s)
  # The node's real CPUs and memory, as slurmd itself measures them.
  node=$(slurmd -C | head -1)
  mkdir -p "$STATE/state" "$STATE/spool" "$STATE/log" "$RUN" /etc/slurm
  chown slurm:slurm "$STATE/state" "$STATE/log"
  touch "$STATE/log/jobcomp.txt" && chown slurm:slurm "$STATE/log/jobcomp.txt"
  cat >"$CONF" <<EOF
$MARK: written by scripts/engines/slurm.sh; removed by its 'down'
ClusterName=orch
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
KillWait=5
DefMemPerCPU=1024
MinJobAge=600
$node
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  alive /run/munge/munged.pid && return
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- munged
}

start_slurm() {
  alive "$RUN/slurmctld.pid" || slurmctld
  alive "$RUN/slurmd.pid" || slurmd
  for _ in $(seq 60); do
    [ "$(sinfo -h -N -o %T 2>/dev/null)" = idle ] && return
    sleep 0.5
  done
  sinfo -N -l >&2 || true
  die "the node did not become idle; see $STATE/log/slurmctld.log and slurmd.log"
}

stop_pid() {
  local file=$1 pid
  alive "$file" || return 0
  pid=$(cat "$file")
  kill "$pid"
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
}

up() {
  install_packages
  write_config
  start_munge
  start_slurm
  status
}

down() {
  # Jobs first (their steps would otherwise outlive slurmd), then the daemons.
  if alive "$RUN/slurmctld.pid"; then
    scancel --quiet --user=root 2>/dev/null || true
    for _ in $(seq 40); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.25; done
  fi
  stop_pid "$RUN/slurmd.pid"
  stop_pid "$RUN/slurmctld.pid"
  stop_pid /run/munge/munged.pid
  if ours; then rm -f "$CONF"; fi
  rm -rf "$STATE" "$RUN"
  echo "slurm: down"
}

status() {
  local ok=0
  for daemon in slurmctld slurmd; do
    if alive "$RUN/$daemon.pid"; then echo "$daemon pid=$(cat "$RUN/$daemon.pid")"; else echo "$daemon down"; ok=1; fi
  done
  if alive /run/munge/munged.pid; then echo "munged pid=$(cat /run/munge/munged.pid)"; else echo "munged down"; ok=1; fi
  [ $ok -eq 0 ] && sinfo -N -o "%N %T %c %m %P"
  return $ok
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up | down | status" ;;
esac
