# The job server (prefalign.cli.job_server): during a local run, one warm process with torch,
# diffusers and pandas imported forks every job's `prefalign` command, so that no job pays for
# those imports again. Off with `job_server: false` in the config or PREFALIGN_JOB_SERVER=off;
# never for cluster executors (their jobs run on other machines, inside their own allocation),
# nor for a run on a GPU (`device` other than cpu: every job starts in a fresh process).
import sys

from prefalign.cli import job_server as _job_server

_JOB_SERVERS = []

for _note in gpu_plan_notes():
    print(_note, file=sys.stderr)


onstart:
    if job_server_wanted():
        server = _job_server.start("logs/job_server.log")
        if server is not None:
            _JOB_SERVERS.append(server)


onsuccess:
    for server in _JOB_SERVERS:
        server.stop()


onerror:
    for server in _JOB_SERVERS:
        server.stop()
