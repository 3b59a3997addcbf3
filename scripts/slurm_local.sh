#!/usr/bin/env bash
# A real Slurm test of `dtpsim sweep --slurm` on this machine (README, "Running on a cluster"):
#
#   1. starts a private single-node Slurm cluster: munged (its own key and socket), slurmctld and
#      slurmd on localhost, every file of theirs in one temporary folder (nothing in /etc or
#      /var is touched; ports 16817/16818);
#   2. submits a small sweep (6 runs of a short quick-start scenario) as a job array with
#      `dtpsim sweep … --slurm --shards 3 --max-parallel 2`, waits for it with squeue and
#      gathers it; then loses one run (removes its summary.json), checks that gather says so
#      (exit 3), and submits the same command again: only that run's shard is submitted;
#   3. gathers it again, runs the same sweep locally (`dtpsim sweep` alone), and compares the two
#      folders file by file, apart from timing fields (the comparison of tests/sweep_cluster.rs);
#   4. stops the cluster (also on error or Ctrl-C) and removes the temporary folder
#      (KEEP=1 keeps it).
#
# Needs Debian's slurm-wlm and munge (slurmctld, slurmd, sbatch, squeue, munged), cargo, and
# root or a user that may run the daemons. Usage: scripts/slurm_local.sh
# Environment: DTPSIM (the binary; default: cargo build --release), KEEP=1, TIMEOUT (seconds
# to wait for the array, default 300).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIMEOUT=${TIMEOUT:-300}
start=$(date +%s.%N)
elapsed() { awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "[slurm_local $(elapsed) s] $*"; }
fail() { echo "[slurm_local] FAILED: $*" >&2; exit 1; }

for cmd in munged slurmctld slurmd sbatch squeue sinfo scontrol cargo awk; do
    command -v "$cmd" >/dev/null || fail "$cmd is not installed (apt-get install slurm-wlm munge)"
done

# the binary and the comparison test, built before the cluster starts
cd "$ROOT"
if [ -z "${DTPSIM:-}" ]; then
    say "building dtpsim (cargo build --release)"
    cargo build --release --quiet
    DTPSIM="${CARGO_TARGET_DIR:-$ROOT/target}/release/dtpsim"
fi
DTPSIM=$(realpath "$DTPSIM")
cargo test --release --quiet --test sweep_cluster --no-run
say "dtpsim: $DTPSIM"

WORK=$(mktemp -d /tmp/dtpsim-slurm.XXXXXX)
chmod 711 "$WORK"
PIDS=()
cleanup() {
    local status=$?
    # jobs still queued or running on this private cluster are cancelled first, so that no
    # job step outlives it
    if [ "${#PIDS[@]}" -gt 1 ] && [ -n "$(squeue -h 2>/dev/null)" ]; then
        scancel -u "$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ]; then
        for log in "$WORK"/slurmctld.log "$WORK"/slurmd.log "$WORK"/munge/munged.log \
            "$WORK"/slurmctld.stderr "$WORK"/slurmd.stderr "$WORK"/munge/munged.stderr; do
            [ -f "$log" ] && { echo "--- tail of $log" >&2; tail -n 15 "$log" >&2; }
        done
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "[slurm_local] kept $WORK"
    else
        rm -rf "$WORK"
    fi
    [ "${#PIDS[@]}" -gt 0 ] && echo "[slurm_local] cluster stopped"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# munge: a key of our own (created here), its own socket
mkdir -p "$WORK/munge" && chmod 711 "$WORK/munge"
KEY="$WORK/munge/munge.key"
if [ ! -f "$KEY" ]; then
    dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none
    chmod 400 "$KEY"
fi
SOCKET="$WORK/munge/munge.socket"
munged --foreground --force --key-file="$KEY" --socket="$SOCKET" \
    --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/munge/munged.log" \
    --seed-file="$WORK/munge/munged.seed" >"$WORK/munge/munged.stderr" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || fail "munged did not start"
say "munged running ($SOCKET)"

# a one-node cluster on localhost
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
mkdir -p "$WORK/state" "$WORK/spool"
export SLURM_CONF="$WORK/slurm.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=dtpsimlocal
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT:-16817}
SlurmdPort=${SLURMD_PORT:-16818}
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MinJobAge=600
NodeName=dtpsimnode NodeHostname=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=local Nodes=dtpsimnode Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -i -f "$SLURM_CONF" >"$WORK/slurmctld.stderr" 2>&1 &
PIDS+=($!)
slurmd -D -N dtpsimnode -f "$SLURM_CONF" >"$WORK/slurmd.stderr" 2>&1 &
PIDS+=($!)
for _ in $(seq 150); do
    state=$(sinfo -h -n dtpsimnode -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.2
done
[ "${state:-}" = idle ] || fail "the node did not become idle (sinfo says '${state:-nothing}')"
say "slurmctld and slurmd running: node dtpsimnode idle ($CPUS CPUs)"

# the sweep: 2 leak values x 3 seeds of a short quick-start run, 3 shards, 2 tasks at a time
SWEEP=("$ROOT/scenarios/quickstart.json"
    --set schedule.trials=12 --set schedule.warmup_trials=3 --set schedule.eval_every=4
    --set data.train=50 --set data.test=20
    --param engine.dynamics.leak=0.25,1 --seeds 3)
# submits the sweep (a rerun submits only the shards with runs to do) and waits for it
submit_and_wait() {
    local submitted job waited=0 state
    submitted=$("$DTPSIM" sweep "${SWEEP[@]}" --out "$WORK/cluster" --slurm --shards 3 \
        --max-parallel 2 --cpus 1 --time 0:10:00 --partition local)
    echo "$submitted"
    job=$(echo "$submitted" | sed -n 's/^submitted Slurm job \([0-9]*\).*/\1/p')
    [ -n "$job" ] || fail "no job id in the output of dtpsim sweep --slurm"
    grep -q "^#SBATCH --array=$1\$" "$WORK/cluster/sweep.sbatch" \
        || fail "expected --array=$1 in $WORK/cluster/sweep.sbatch"
    say "job array $job submitted (--array=$1)"
    while [ -n "$(squeue -h -j "$job" 2>/dev/null)" ]; do
        if [ "$waited" -ge $((TIMEOUT * 5)) ]; then
            squeue -j "$job" >&2 || true
            fail "job $job still queued or running after $TIMEOUT s"
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    say "job array $job finished"
    for task in $2; do
        state=$(scontrol -o show job "${job}_$task" 2>/dev/null | grep -o 'JobState=[A-Z]*' || echo 'JobState=?')
        echo "  task $task: $state; $(tail -n 1 "$WORK/cluster/slurm/${job}_$task.out" 2>/dev/null | cut -c1-90)"
        [ "$state" = JobState=COMPLETED ] \
            || fail "task $task: $state (see $WORK/cluster/slurm/${job}_$task.err; KEEP=1 keeps it)"
    done
}
submit_and_wait '0-2%2' '0 1 2'
"$DTPSIM" sweep gather "$WORK/cluster" | tail -n 1
say "gathered"

# a lost run (its summary.json removed, as if the task had been killed): gather lists it and
# exits 3; the same command submits only its shard (run 004 is in shard 4 mod 3 = 1)
rm "$WORK/cluster/runs/004/summary.json"
code=0
"$DTPSIM" sweep gather "$WORK/cluster" >/dev/null 2>"$WORK/gather.err" || code=$?
[ "$code" = 3 ] && grep -q '^run 004 .*: missing' "$WORK/gather.err" \
    || fail "gather of an incomplete sweep: exit $code, $(cat "$WORK/gather.err")"
say "gather lists the lost run 004 (exit 3); submitting again"
submit_and_wait '1%2' '1'
"$DTPSIM" sweep gather "$WORK/cluster" | tail -n 1
say "gathered"
"$DTPSIM" sweep "${SWEEP[@]}" --out "$WORK/local" --quiet | tail -n 1
say "the same sweep run locally"

if compared=$(DTPSIM_SWEEP_A="$WORK/local" DTPSIM_SWEEP_B="$WORK/cluster" \
    cargo test --release --quiet --test sweep_cluster -- --ignored --exact \
    two_sweep_folders_named_by_the_environment_are_the_same 2>&1); then
    echo "$compared" | grep 'test result'
else
    echo "$compared" >&2
    fail "the Slurm sweep differs from the local one"
fi
say "PASS: the Slurm array's sweep and the local sweep are the same (apart from timing)"
