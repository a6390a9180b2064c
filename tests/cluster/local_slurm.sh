#!/usr/bin/env bash
# A one-node SLURM cluster on loopback, for testing the slurm profile (tests/test_slurm.py).
#
#   tests/cluster/local_slurm.sh start    # idempotent: installs what is missing (apt, root), starts
#                                         # munged, slurmctld and slurmd unless already alive
#   tests/cluster/local_slurm.sh status   # which daemons of ours are alive, and sinfo
#   tests/cluster/local_slurm.sh stop     # stops exactly the daemons this script started, by pid
#   tests/cluster/local_slurm.sh env      # prints `export SLURM_CONF=...` (the clients need it)
#
# The config goes to /etc/slurm (SLURM_LOCAL_CONF_DIR): Snakemake's jobstep executor drops SLURM_CONF
# before its inner srun, so the clients inside jobs read the default path; an /etc/slurm/slurm.conf
# this script did not write is never overwritten. State, logs and pid files: $SLURM_LOCAL_DIR. No slurmdbd: accounting is off, so `sacct` fails and the profile's status
# command is squeue (MinJobAge keeps finished jobs visible to it). One fake GPU (gres.conf
# File=/dev/null) serves the GPU requests of the profile; torch still sees no CUDA and runs on CPU.
# SlurmdParameters=config_overrides lets the node advertise the CPUs, memory and GPU the profile asks
# for (a cluster-sized request must not pend forever on a small CI machine).
# Knobs: SLURM_LOCAL_DIR (default /tmp/labelleak-slurm), SLURM_LOCAL_CPUS (16), SLURM_LOCAL_MEM_MB (131072).
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/labelleak-slurm}
CPUS=${SLURM_LOCAL_CPUS:-16}
MEM=${SLURM_LOCAL_MEM_MB:-131072}
CONF_DIR=${SLURM_LOCAL_CONF_DIR:-/etc/slurm}
CONF=$CONF_DIR/slurm.conf
MARK="# Written by tests/cluster/local_slurm.sh"
export SLURM_CONF=$CONF

say() { echo "local_slurm: $*" >&2; }
die() { say "$*"; exit 1; }

alive() {  # alive PIDFILE: the pid in the file is a live process
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_missing() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]} and not root: apt-get install slurm-wlm munge"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get"
    say "installing slurm-wlm munge (apt-get)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

write_if_changed() {  # write_if_changed FILE (content on stdin); returns 0 when the file changed
    local new
    new=$(cat)
    if [[ -f $1 ]] && [[ "$(cat "$1")" == "$new" ]]; then
        return 1
    fi
    printf '%s\n' "$new" >"$1"
}

write_configs() {  # returns 0 when a config changed
    mkdir -p "$CONF_DIR" "$DIR"/state "$DIR"/spool "$DIR"/log
    if [[ -f $CONF ]] && ! grep -q "^$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; set SLURM_LOCAL_CONF_DIR"
    fi
    local changed=1
    write_if_changed "$CONF" <<EOF && changed=0
$MARK: one node on loopback, no accounting, one fake GPU.
ClusterName=labelleak
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=600
SlurmdParameters=config_overrides
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
GresTypes=gpu
NodeName=localhost NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    write_if_changed "$CONF_DIR/gres.conf" <<EOF && changed=0
$MARK
# A fake GPU: slurm needs a character device; torch sees no CUDA and the job runs on CPU.
NodeName=localhost Name=gpu File=/dev/null
EOF
    return $changed
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged is serving (ours or the system's)
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge: /etc/munge/munge.key 2>/dev/null || true
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge: /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    if id munge >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
        runuser -u munge -- /usr/sbin/munged
    else
        /usr/sbin/munged
    fi
    for _ in $(seq 50); do
        [[ -s /run/munge/munged.pid ]] && break
        sleep 0.1
    done
    cp /run/munge/munged.pid "$DIR/munged.pid"  # ours: `stop` ends it
    munge -n | unmunge >/dev/null || die "munged does not answer"
}

stop_pid() {  # stop_pid NAME PIDFILE: SIGTERM, wait up to 30 s, SIGKILL as a fallback
    local name=$1 file=$2 pid
    alive "$file" || { rm -f "$file"; return 0; }
    pid=$(cat "$file")
    kill -TERM "$pid"
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name ($pid) ignored SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
    say "stopped $name ($pid)"
}

stop_slurm() {
    stop_pid slurmd "$DIR/slurmd.pid"
    stop_pid slurmctld "$DIR/slurmctld.pid"
}

wait_node_idle() {
    local state
    for _ in $(seq 120); do
        state=$(sinfo -h -N -n localhost -o %T 2>/dev/null || true)
        case $state in
            idle*|mixed*|allocated*) return 0 ;;
            drain*|down*|*drain*)
                scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    die "node not idle (state: ${state:-none}); see $DIR/log/slurmd.log and slurmctld.log"
}

cmd_start() {
    install_missing
    mkdir -p "$DIR"
    if write_configs && { alive "$DIR/slurmctld.pid" || alive "$DIR/slurmd.pid"; }; then
        say "config changed: restarting slurm daemons"
        stop_slurm
    fi
    start_munge
    if ! alive "$DIR/slurmctld.pid"; then
        slurmctld -f "$CONF"
        say "started slurmctld"
    fi
    for i in $(seq 150); do
        scontrol ping >/dev/null 2>&1 && break
        if ((i > 25)) && ! alive "$DIR/slurmctld.pid"; then
            die "slurmctld is not running: $(tail -n 1 "$DIR/log/slurmctld.log")"
        fi
        sleep 0.2
    done
    if ! alive "$DIR/slurmd.pid"; then
        slurmd -f "$CONF"
        say "started slurmd"
    fi
    wait_node_idle
    timeout 120 srun -N1 -n1 -t 1 --gpus=1 true || die "a test job (srun --gpus=1 true) failed"
    say "up: $(sinfo -h -o '%P %D %T %C %G')"
    echo "export SLURM_CONF=$CONF"
}

cmd_stop() {
    stop_slurm
    if [[ -s $DIR/munged.pid ]]; then
        if [[ -s /run/munge/munged.pid ]] && [[ $(cat "$DIR/munged.pid") == $(cat /run/munge/munged.pid) ]]; then
            stop_pid munged "$DIR/munged.pid"
        else
            rm -f "$DIR/munged.pid"  # not the munged we started
        fi
    fi
}

cmd_status() {
    local rc=0
    for d in munged slurmctld slurmd; do
        if alive "$DIR/$d.pid"; then echo "$d: running (pid $(cat "$DIR/$d.pid"))"; else echo "$d: not ours/not running"; rc=1; fi
    done
    sinfo 2>/dev/null || true
    return $rc
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    restart) cmd_stop; cmd_start ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|restart|env" >&2; exit 2 ;;
esac
