"""A single-node SLURM for the tests: munged, slurmctld and slurmd of Debian's packages
(slurm-wlm, munge), run as foreground child processes with their configuration, state, logs and
munge socket in one temporary folder, on free ports.

``SingleNodeSlurm(folder).start()`` raises ``SlurmUnavailable`` with the reason when the binaries
are missing or the daemons do not come up; ``stop()`` ends exactly the processes it started.
"""
import os
import shutil
import socket
import subprocess
import time

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")

SLURM_CONF = """\
ClusterName=sweeptest
SlurmctldHost={host}
SlurmUser={user}
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
InactiveLimit=0
MinJobAge=300
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmUnavailable(RuntimeError):
    """SLURM cannot run here; the message says why."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SingleNodeSlurm:
    """munged + slurmctld + slurmd for this machine, configured in ``folder``.

    ``env``: the variables clients (sbatch, squeue, scancel, dask-jobqueue) need to reach it."""

    partition = "sweeps"

    def __init__(self, folder, cpus=2, memory_mb=2000):
        self.folder = os.path.abspath(folder)
        self.host = socket.gethostname().split(".")[0]
        self.cpus, self.memory_mb = cpus, memory_mb
        self.conf = os.path.join(self.folder, "slurm.conf")
        self.munge_socket = os.path.join(self.folder, "munge", "munge.socket")
        self.env = {"SLURM_CONF": self.conf}
        self.processes = []

    def start(self, timeout=30.0):
        missing = [b for b in BINARIES if shutil.which(b) is None]
        if missing:
            raise SlurmUnavailable(f"SLURM binaries not found: {', '.join(missing)} (Debian: "
                                   "apt-get install slurm-wlm munge)")
        if os.geteuid() != 0:
            raise SlurmUnavailable("slurmd must run as root to start jobs; these tests are "
                                   "not running as root")
        for sub in ("state", "spool", "munge"):
            os.makedirs(os.path.join(self.folder, sub), mode=0o700, exist_ok=True)
        self._write_munge_key()
        with open(self.conf, "w") as f:
            f.write(SLURM_CONF.format(host=self.host, user="root", folder=self.folder,
                                      ctld_port=free_port(), slurmd_port=free_port(),
                                      munge_socket=self.munge_socket, cpus=self.cpus,
                                      memory_mb=self.memory_mb, partition=self.partition))
        munge_dir = os.path.join(self.folder, "munge")
        self._launch("munged", ["munged", "--foreground", "--force",
                                f"--socket={self.munge_socket}",
                                f"--key-file={munge_dir}/munge.key",
                                f"--pid-file={munge_dir}/munged.pid",
                                f"--seed-file={munge_dir}/munged.seed",
                                f"--log-file={munge_dir}/munged.log"])
        self._wait(lambda: os.path.exists(self.munge_socket), timeout, "munged",
                   os.path.join(munge_dir, "munged.log"))
        self._launch("slurmctld", ["slurmctld", "-D", "-i", "-f", self.conf])
        self._wait(lambda: self._client(["sinfo", "-h"]).returncode == 0, timeout, "slurmctld",
                   os.path.join(self.folder, "slurmctld.log"))
        self._launch("slurmd", ["slurmd", "-D", "-f", self.conf, "-N", self.host])
        self._wait(self._node_is_idle, timeout, "slurmd",
                   os.path.join(self.folder, "slurmd.log"))
        return self

    def stop(self, timeout=20.0):
        """Cancel every job and wait for the jobs to end, then end the daemons this object
        started (newest first)."""
        if len(self.processes) == 3 and all(p.poll() is None for _, p in self.processes):
            self._client(["scancel", "--partition", self.partition])
            deadline = time.monotonic() + timeout
            while self.jobs() and time.monotonic() < deadline:
                time.sleep(0.3)
        for _, process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []

    def jobs(self):
        """{job id: state} of the jobs SLURM knows (squeue)."""
        out = self._client(["squeue", "-h", "-o", "%i %T"]).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def scancel(self, job_id):
        result = self._client(["scancel", str(job_id)])
        if result.returncode != 0:
            raise RuntimeError(f"scancel {job_id} failed: {result.stderr}")

    # ------------------------------------------------------------------------------------------
    def _write_munge_key(self):
        path = os.path.join(self.folder, "munge", "munge.key")
        if not os.path.exists(path):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(os.urandom(1024))

    def _launch(self, name, command):
        log = open(os.path.join(self.folder, f"{name}.out"), "w")
        try:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       env=dict(os.environ, **self.env))
        except OSError as error:
            raise SlurmUnavailable(f"{name} did not start: {error}") from error
        finally:
            log.close()
        self.processes.append((name, process))

    def _client(self, command):
        return subprocess.run(command, capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, **self.env))

    def _node_is_idle(self):
        out = self._client(["sinfo", "-h", "-N", "-o", "%T"]).stdout.split()
        return out == ["idle"]

    def _wait(self, ready, timeout, name, log):
        """Wait until ``ready()``; else stop everything and raise SlurmUnavailable with the end
        of the daemon's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [n for n, p in self.processes if p.poll() is not None]
            if dead:
                problem = f"{', '.join(dead)} exited"
                break
            time.sleep(0.3)
        else:
            problem = f"{name} did not come up within {timeout:.0f} s"
        self.stop()
        tail = ""
        for path in (log, os.path.join(self.folder, f"{name}.out")):
            if os.path.exists(path):
                with open(path) as f:
                    tail += f.read()[-1500:]
        raise SlurmUnavailable(f"{problem}; the end of its log:\n{tail.strip()}")
