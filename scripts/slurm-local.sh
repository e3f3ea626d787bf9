#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the Slurm executor's integration test.
#
#   scripts/slurm-local.sh start   install slurm-wlm + munge if missing (apt, as root), write
#                                  /etc/slurm/slurm.conf for this host, start munged, slurmctld
#                                  and slurmd, wait until `sinfo` shows the node idle
#   scripts/slurm-local.sh stop    stop the three daemons by the process ids `start` recorded
#   scripts/slurm-local.sh status  print `sinfo` and the recorded process ids
#
# Needs root and Debian's packages (the recipe is ../shared/notes/slurm-local.md). The process
# ids live in $MPT_SLURM_STATE (default /tmp/mpt-slurm-local). An existing slurm.conf that this
# script did not write is left alone unless MPT_SLURM_OVERWRITE=1.
set -euo pipefail

STATE="${MPT_SLURM_STATE:-/tmp/mpt-slurm-local}"
CONF=/etc/slurm/slurm.conf
MARK="# written by mpt scripts/slurm-local.sh"

die() { echo "slurm-local: $*" >&2; exit 1; }

install_packages() {
    local missing=() p
    for p in slurm-wlm munge; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die "need ${missing[*]} and there is no apt-get"
    echo "slurm-local: apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
}

write_conf() {
    local host cpus mem
    host="$(hostname -s)"
    cpus="$(nproc)"
    mem=$(( $(free -m | awk '/Mem:/{print $2}') - 1024 ))
    if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF" && [[ "${MPT_SLURM_OVERWRITE:-0}" != 1 ]]; then
        die "$CONF exists and was not written by this script (MPT_SLURM_OVERWRITE=1 replaces it)"
    fi
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
    cat > "$CONF" <<EOF
$MARK
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmUser=root
ReturnToService=2
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

pid_of() { pgrep -x "$1" | head -n1; }

start() {
    [[ $(id -u) -eq 0 ]] || die "start needs root (it installs packages and runs the daemons)"
    install_packages
    write_conf
    [[ -f /etc/munge/munge.key ]] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 400 /etc/munge/munge.key
    mkdir -p "$STATE"
    local daemon
    for daemon in munged slurmctld slurmd; do
        if [[ -z "$(pid_of "$daemon")" ]]; then
            case $daemon in
                munged) /usr/sbin/munged --force ;;
                *) "/usr/sbin/$daemon" ;;
            esac
        fi
        sleep 1
        local pid
        pid="$(pid_of "$daemon")"
        [[ -n $pid ]] || die "$daemon did not start (see /var/log/slurm/ and /var/log/munge/)"
        echo "$pid" > "$STATE/$daemon.pid"
    done
    local i
    for i in $(seq 1 30); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "slurm-local: up ($(sinfo -h -o '%N %c CPUs %T'))"
            return 0
        fi
        # A node that came back from an earlier cluster may need a resume.
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    sinfo || true
    die "the node did not become idle within 30 s"
}

stop() {
    local daemon pid
    for daemon in slurmd slurmctld munged; do
        [[ -f "$STATE/$daemon.pid" ]] || continue
        pid="$(cat "$STATE/$daemon.pid")"
        if kill "$pid" 2>/dev/null; then
            echo "slurm-local: stopped $daemon ($pid)"
        fi
        rm -f "$STATE/$daemon.pid"
    done
}

status() {
    sinfo 2>/dev/null || echo "slurm-local: sinfo failed (cluster not running?)"
    local f
    for f in "$STATE"/*.pid; do
        [[ -f $f ]] && echo "$(basename "$f" .pid): $(cat "$f")"
    done
    return 0
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
