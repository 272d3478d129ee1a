#!/usr/bin/env bash
# Start a one-node Slurm 22.05 on this machine, for the tests (`.ci/run` calls it before the suite).
#
# As root: installs Debian's slurmctld, slurmd, slurm-client and munge if missing (about 10 s),
# writes /etc/slurm/slurm.conf naming this host (only if no other slurm.conf is there: a real
# cluster's is never touched), keeps Slurm's state and spool folders under $JOBRUNNER_SLURM_DIR
# (default /tmp/jobrunner-slurm), starts munged, slurmctld and slurmd in the background, and waits
# until `sinfo` says the node is idle (about 6 s from cold). Safe to run again: a Slurm that
# already answers is left as it is.
#
# Also installs bindfs (FUSE) for the shared-disk tests, faketime for a node whose clock is off, and
# ncdump (netcdf-bin) to read stitched.nc with the netCDF C library.
# MPI and Dask need no system service: the test extras install them into .venv (`jobrunner[mpi]`,
# `jobrunner[dask]`), and the tests start their own mpiexec and Dask scheduler and workers.
set -euo pipefail

state=${JOBRUNNER_SLURM_DIR:-/tmp/jobrunner-slurm}
conf=/etc/slurm/slurm.conf
marker="# written by jobrunner scripts/engines.sh"

node_state() { timeout 10 sinfo -h -o %T 2>/dev/null | head -n1 || true; }

# bindfs (FUSE): two mounts of one folder stand in for two machines sharing a disk whose locks do
# not reach across (tests/test_shared_disk.py). About 3 MB.
if [ "$(id -u)" = 0 ] && ! command -v bindfs >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fuse3 bindfs >/dev/null
  echo "engines: installed bindfs"
fi

# faketime (libfaketime): a worker on a "node" whose clock runs behind (tests/test_plan_identity.py).
if [ "$(id -u)" = 0 ] && ! command -v faketime >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends faketime >/dev/null
  echo "engines: installed faketime"
fi

# ncdump (the netCDF C library's, netcdf-bin): reads stitched.nc back as the field's tools do
# (tests/test_results.py). About 1 MB.
if [ "$(id -u)" = 0 ] && ! command -v ncdump >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends netcdf-bin >/dev/null
  echo "engines: installed ncdump"
fi

if command -v sinfo >/dev/null && [[ "$(node_state)" =~ ^(idle|mixed|allocated) ]]; then
  echo "engines: Slurm is already up ($(node_state))"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "engines: Slurm is not running and only root can start it here; the Slurm tests will skip" >&2
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
  || ! command -v sbatch >/dev/null; then
  started=$SECONDS
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
  echo "engines: installed Slurm and munge in $((SECONDS - started)) s"
fi

if [ -e "$conf" ] && ! grep -qF "$marker" "$conf"; then
  echo "engines: $conf exists and is not ours; not touching it, and Slurm does not answer" >&2
  exit 1
fi

host=$(hostname -s)
cpus=$(nproc)
mkdir -p "$state/ctld" "$state/d" /etc/slurm
cat >"$conf" <<EOF
$marker: a one-node cluster for the tests
ClusterName=jobrunner-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MailProg=/bin/true
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

# munge: a key, and the daemon running as its own user (it refuses to run as root).
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
fi

# Daemons started by an earlier run but not answering (a stale config, a crashed controller) go first.
for pidfile in "$state/slurmctld.pid" "$state/slurmd.pid"; do
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" && sleep 1
  fi
done
# -i: ignore state left by an earlier run; -c: clear its jobs. Detached, so they outlive this script.
setsid slurmctld -D -i -c >>"$state/slurmctld.out" 2>&1 </dev/null &
setsid slurmd -D >>"$state/slurmd.out" 2>&1 </dev/null &

for _ in $(seq 120); do
  if [[ "$(node_state)" =~ ^(idle|mixed|allocated) ]]; then
    echo "engines: Slurm is up on $host with $cpus CPUs (state and logs in $state)"
    exit 0
  fi
  sleep 0.5
done
echo "engines: Slurm did not come up within 60 s; see $state/slurmctld.log and $state/slurmd.log" >&2
exit 1
