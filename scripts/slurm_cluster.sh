#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the SLURM test tier (make test-slurm).
# Usage (as root): scripts/slurm_cluster.sh start DIR   install slurm-wlm + munge if missing, write
#                                                       DIR/slurm.conf, start munged, slurmctld,
#                                                       slurmd; wait until the node is idle
#                  scripts/slurm_cluster.sh stop DIR    stop the three daemons by their PIDs
# Clients find the cluster with SLURM_CONF=DIR/slurm.conf. State, spool, PID and log files stay
# in DIR; nothing under /etc is changed except what apt-get installs (and munge's key, if absent).
set -euo pipefail
cmd="${1:?usage: $0 start|stop DIR}"
dir="$(mkdir -p "${2:?usage: $0 start|stop DIR}" && cd "$2" && pwd)"

stop() {
  if [ -s "$dir/slurmctld.pid" ] && [ -f "$dir/slurm.conf" ]; then  # end this cluster's jobs first
    export SLURM_CONF="$dir/slurm.conf"
    jobs="$(squeue -h -o %A 2>/dev/null | sort -u)"
    if [ -n "$jobs" ]; then
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 60); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 1; done
    fi
  fi
  for name in slurmd slurmctld munged; do
    pidfile="$dir/$name.pid"
    if [ -s "$pidfile" ]; then
      pid="$(cat "$pidfile")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "error: $0 needs root (it installs packages and runs slurmd)" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

host="$(hostname -s)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) * 8 / 10 / 1024 ))
stop  # a cluster left running in DIR by an interrupted run
rm -rf "$dir/state" "$dir/spool" "$dir/munge"  # a fresh cluster: no jobs from an earlier run
mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
cat > "$dir/slurm.conf" <<EOF
ClusterName=lc-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MinJobAge=60
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=$host CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$dir/slurm.conf"

# munge: the key and a socket of its own (a running system munged is left alone)
[ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; }
chown munge:munge "$dir/munge"
runuser -u munge -- munged --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munge.seed" --force
for _ in $(seq 50); do [ -s "$dir/munge/munged.pid" ] && break; sleep 0.1; done
cp "$dir/munge/munged.pid" "$dir/munged.pid"

setsid slurmctld -D -f "$SLURM_CONF" >"$dir/slurmctld.out" 2>&1 < /dev/null &
setsid slurmd -D -f "$SLURM_CONF" >"$dir/slurmd.out" 2>&1 < /dev/null &
for _ in $(seq 120); do
  if [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ]; then
    echo "slurm cluster up: node $host idle; export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "error: the SLURM node did not become idle within 60 s; see $dir/slurmctld.log and $dir/slurmd.log" >&2
stop
exit 1
