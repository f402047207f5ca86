#!/usr/bin/env bash
# A real single-node Slurm on this machine, for tests/e2e/test_slurm.py (`snakemake --profile slurm`).
#
#   tests/slurm_cluster.sh up       install slurm-wlm + munge if missing (apt-get), write the config
#                                   under the state dir, start munged, slurmctld, slurmd; wait for idle
#   tests/slurm_cluster.sh down     cancel our jobs, shut down, kill only the PIDs `up` started
#   tests/slurm_cluster.sh status   what is running, and sinfo
#
# The node stands in for one GPU node of a cluster: partitions `cpu` (default) and `gpu` (the names
# workflow/profiles/slurm/config.yaml uses), a fake `gpu` GRES of LSAP_SLURM_GPUS (default 8) devices
# backed by no driver (jobs asking for GPUs schedule, torch still sees none) and, via
# SlurmdParameters=config_overrides, the CPUs and memory of a GPU node (LSAP_SLURM_CPUS, default 96;
# LSAP_SLURM_MEM_MB, default 1 TB): a standard 8-GPU node, so the profile's requests schedule unchanged.
# Nothing is enforced (no cgroups): jobs share this machine's real cores.
#
# Needs root (it writes /etc/slurm/{slurm,gres}.conf as links into the state dir and runs the
# daemons as root). Environment: LSAP_SLURM_DIR (state dir, default /tmp/lsap-slurm),
# LSAP_SLURM_OWNER (PID of the session using the cluster, default the caller's PID; a cluster whose
# owner is dead is stale and is replaced), LSAP_SLURM_WAIT (seconds to wait for another live
# session's cluster to go down, default 600).
#
# Exit codes: 0 done; 77 Slurm cannot be brought up here (not root, no apt-get, install failed, a
# Slurm this script did not start is running): the caller should skip, the reason is the last line
# on stderr; 75 another live session still holds the cluster after LSAP_SLURM_WAIT; 1 failure.
set -uo pipefail

DIR=${LSAP_SLURM_DIR:-/tmp/lsap-slurm}
OWNER=${LSAP_SLURM_OWNER:-$PPID}
WAIT_BUSY=${LSAP_SLURM_WAIT:-600}
# a standard 8-GPU node (nominal, via config_overrides): 96 CPUs, 1 TB, 8 GPUs
NODE_CPUS=${LSAP_SLURM_CPUS:-96}
NODE_MEM_MB=${LSAP_SLURM_MEM_MB:-1000000}
NODE_GPUS=${LSAP_SLURM_GPUS:-8}
EX_CANNOT=77
EX_BUSY=75
DAEMONS=(slurmd slurmctld munged)   # stop order

say() { echo "slurm_cluster: $*" >&2; }
cannot() { echo "slurm_cluster: CANNOT: $*" >&2; exit "$EX_CANNOT"; }
die() { echo "slurm_cluster: ERROR: $*" >&2; exit 1; }
alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1") != Z* ]]; }  # zombies are gone
saved_pid() { cat "$DIR/pids/$1" 2>/dev/null || true; }
is_ours() { [[ "$(readlink "/etc/slurm/$1" 2>/dev/null)" == "$DIR/etc/$1" ]]; }

wait_for() {  # wait_for SECONDS COMMAND...: poll every 0.2 s until COMMAND succeeds
    local until=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS >= until)) && return 1
        sleep 0.2
    done
}

node_idle() { [[ "$(sinfo -h -n localhost -o %T 2>/dev/null)" == idle ]]; }
queue_empty() { [[ -z "$(squeue -h -o %i 2>/dev/null)" ]]; }
munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
none_alive() { local n; for n in "$@"; do alive "$(saved_pid "$n")" && return 1; done; return 0; }

cluster_alive() { ! none_alive slurmctld slurmd; }

install() {
    local missing=() b
    for b in slurmctld slurmd sinfo squeue scancel scontrol munged munge unmunge setpriv; do
        command -v "$b" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$b" >/dev/null 2>&1 || missing+=("$b")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null 2>&1 || cannot "Slurm is not installed (${missing[*]} missing) and there is no apt-get to install slurm-wlm and munge"
    say "installing slurm-wlm and munge (missing: ${missing[*]})"
    mkdir -p "$DIR"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y slurm-wlm munge >"$DIR/apt.log" 2>&1; then
        apt-get update >>"$DIR/apt.log" 2>&1
        apt-get install -y slurm-wlm munge >>"$DIR/apt.log" 2>&1 ||
            cannot "apt-get install -y slurm-wlm munge failed (see $DIR/apt.log): $(tail -1 "$DIR/apt.log")"
    fi
}

fake_gpu_lines() {  # one gres line per fake GPU: a character node of its own under the state dir
    # (major 195, NVIDIA's, minor i, no driver behind it): nothing opens them, torch never sees them
    local i
    mkdir -p "$DIR/dev"
    for ((i = 0; i < NODE_GPUS; i++)); do
        [[ -c "$DIR/dev/gpu$i" ]] || mknod "$DIR/dev/gpu$i" c 195 "$i" || die "mknod $DIR/dev/gpu$i failed"
        echo "NodeName=localhost Name=gpu File=$DIR/dev/gpu$i"
    done
}

write_config() {
    mkdir -p "$DIR/etc" "$DIR/log" "$DIR/pids"
    rm -rf "$DIR/state" "$DIR/spool"   # a clean start: state/ keeps job ids and queued jobs
    mkdir -p "$DIR/state" "$DIR/spool"
    cat >"$DIR/etc/slurm.conf" <<EOF
# Written by tests/slurm_cluster.sh: one node standing in for a GPU node (see the script's header).
ClusterName=lsaplocal
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/state/slurmctld.pid
SlurmdPidFile=$DIR/spool/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=500
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB Gres=gpu:$NODE_GPUS State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/gres.conf" <<EOF
AutoDetect=off
$(fake_gpu_lines)
EOF
    # Jobs' srun needs the config at the default place: the jobstep strips SLURM_CONF.
    mkdir -p /etc/slurm
    local f
    for f in slurm.conf gres.conf; do ln -sfn "$DIR/etc/$f" "/etc/slurm/$f"; done
}

start() {  # start NAME COMMAND...: a daemon in the foreground of its own session; keep its PID
    local name=$1; shift
    setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 9>&- &   # 9>&-: the daemons must not hold the lock
    echo $! >"$DIR/pids/$name"
}

stop_cluster() {  # everything the saved PIDs name; nothing else
    local n pid
    if alive "$(saved_pid slurmctld)"; then
        scancel --user=root >/dev/null 2>&1 || true
        wait_for 60 queue_empty || say "jobs still queued after scancel: $(squeue -h -o '%i %T' | tr '\n' ' ')"
        scontrol shutdown >/dev/null 2>&1 || true
        wait_for 15 none_alive slurmd slurmctld || true
    fi
    for n in "${DAEMONS[@]}"; do
        pid=$(saved_pid "$n")
        if alive "$pid"; then
            [[ $n == munged ]] || say "$n ($pid) still up after shutdown: TERM"
            kill "$pid" 2>/dev/null || true
            local until=$((SECONDS + 10))
            while alive "$pid" && ((SECONDS < until)); do sleep 0.2; done
            alive "$pid" && { say "$n ($pid) ignores TERM: KILL"; kill -9 "$pid" 2>/dev/null || true; }
        fi
        rm -f "$DIR/pids/$n"
    done
    local f
    for f in slurm.conf gres.conf; do is_ours "$f" && rm -f "/etc/slurm/$f"; done
    rm -f "$DIR/owner"
}

lock() {
    mkdir -p "$DIR"; exec 9>"$DIR/lock"
    flock -w "$WAIT_BUSY" 9 || { say "BUSY: $DIR/lock held by another up/down for ${WAIT_BUSY}s"; exit "$EX_BUSY"; }
}
unlock() { flock -u 9; }

up() {
    [[ $(id -u) == 0 ]] || cannot "needs root (it writes /etc/slurm and runs slurmctld/slurmd as root); running as $(id -un)"
    export PATH=$PATH:/usr/sbin:/sbin
    install
    command -v flock >/dev/null || cannot "flock (util-linux) is missing"
    lock
    # Another session's cluster: wait for it to go down; a dead owner's cluster is stale.
    local owner until=$((SECONDS + WAIT_BUSY))
    while owner=$(cat "$DIR/owner" 2>/dev/null) && [[ -n $owner ]]; do
        if [[ $owner == "$OWNER" ]] && cluster_alive && node_idle; then
            say "already up for this session (owner $OWNER)"; return 0
        fi
        if ! alive "$owner" || ! cluster_alive || [[ $owner == "$OWNER" ]]; then
            say "replacing a stale cluster (owner $owner)"; stop_cluster; break
        fi
        ((SECONDS >= until)) && { say "BUSY: the cluster in $DIR is in use by PID $owner (waited ${WAIT_BUSY}s)"; exit "$EX_BUSY"; }
        say "the cluster in $DIR is in use by PID $owner; waiting"
        unlock; sleep 5; lock
    done
    ! cluster_alive && none_alive munged || { say "stopping leftovers of an earlier run"; stop_cluster; }
    # Never take over a Slurm this script did not start, nor a config it did not write.
    local foreign
    foreign=$(ps -eo pid=,stat=,comm= | awk '$2 !~ /^Z/ && ($3 == "slurmctld" || $3 == "slurmd") {printf "%s ", $1}')
    [[ -z $foreign ]] || cannot "a Slurm not started by this script is running (PIDs $foreign)"
    local f
    for f in slurm.conf gres.conf; do
        [[ ! -e /etc/slurm/$f && ! -L /etc/slurm/$f ]] || is_ours "$f" ||
            cannot "/etc/slurm/$f exists and is not this script's; refusing to replace it"
    done
    local t0=$SECONDS
    write_config
    # munge: reuse a working munged (e.g. the system's), else start one as user munge.
    if ! munge_works; then
        mkdir -p /run/munge /var/log/munge /var/lib/munge
        chown munge:munge /run/munge /var/log/munge /var/lib/munge
        start munged setpriv --reuid=munge --regid=munge --init-groups "$(command -v munged)" -F
        wait_for 20 munge_works || { stop_cluster; die "munged did not start (see $DIR/log/munged.out)"; }
    fi
    start slurmctld "$(command -v slurmctld)" -D
    start slurmd "$(command -v slurmd)" -D -N localhost
    echo "$OWNER" >"$DIR/owner"
    if ! wait_for 60 node_idle; then
        say "node not idle after 60 s: $(sinfo -h -o '%P %T %E' 2>&1 | tr '\n' ';')"
        tail -5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 2>/dev/null
        stop_cluster; die "Slurm did not come up"
    fi
    say "up in $((SECONDS - t0)) s: slurmctld $(saved_pid slurmctld), slurmd $(saved_pid slurmd), munged $(saved_pid munged || true) (state $DIR, owner $OWNER)"
    sinfo >&2
}

down() {
    export PATH=$PATH:/usr/sbin:/sbin
    [[ -d $DIR/pids ]] || { say "nothing to stop"; return 0; }
    lock
    local owner
    owner=$(cat "$DIR/owner" 2>/dev/null)
    if [[ -n $owner && $owner != "$OWNER" ]] && alive "$owner" && [[ -z ${LSAP_SLURM_FORCE:-} ]]; then
        say "BUSY: the cluster belongs to live PID $owner, not $OWNER (LSAP_SLURM_FORCE=1 stops it anyway)"
        exit "$EX_BUSY"
    fi
    local t0=$SECONDS
    stop_cluster
    say "down in $((SECONDS - t0)) s (logs kept in $DIR/log)"
}

status() {
    export PATH=$PATH:/usr/sbin:/sbin
    local n
    for n in "${DAEMONS[@]}"; do
        echo "$n: $(saved_pid "$n") $(alive "$(saved_pid "$n")" && echo running || echo not-running)"
    done
    echo "owner: $(cat "$DIR/owner" 2>/dev/null)"
    cluster_alive && { sinfo; squeue; }
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
