"""Entry point of the distributed-training workers of an Indexed Job: TF_CONFIG from the completion index.

Kubernetes gives each pod of an Indexed Job its index (``JOB_COMPLETION_INDEX``) and, with
``spec.template.spec.subdomain`` naming a headless Service, the stable DNS name
``<job name>-<index>.<subdomain>``. This script writes the cluster of all workers and this pod's
task into ``TF_CONFIG`` for ``tf.distribute.MultiWorkerMirroredStrategy`` (worker 0 is the chief,
which writes the model), then replaces itself with the given command::

    python tf_config.py tfic train DATA --model-base-path /models --model-name NAME --strategy multi-worker

Environment: ``JOB_COMPLETION_INDEX`` (set by Kubernetes), ``TFIC_TF_WORKERS`` (= the Job's
completions and parallelism), ``TFIC_TF_JOB_NAME``, ``TFIC_TF_SUBDOMAIN``, ``TFIC_TF_PORT``
(default 2222) and optionally ``TFIC_TF_NAMESPACE`` (for fully qualified names).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_PORT = 2222


class ConfigError(Exception):
    """The environment does not describe a valid worker of an Indexed Job."""


def worker_hosts(job_name: str, subdomain: str, workers: int, port: int, namespace: str = "") -> list[str]:
    """``<job>-<i>.<subdomain>[.<namespace>.svc]:<port>`` for every worker index."""
    suffix = f".{subdomain}" + (f".{namespace}.svc" if namespace else "")
    return [f"{job_name}-{i}{suffix}:{port}" for i in range(workers)]


def tf_config(
    index: int, workers: int, job_name: str, subdomain: str, port: int = DEFAULT_PORT, namespace: str = ""
) -> dict[str, Any]:
    if workers < 1:
        raise ConfigError(f"the number of workers must be at least 1, got {workers}")
    if not 0 <= index < workers:
        raise ConfigError(f"completion index {index} is outside 0..{workers - 1}: completions and workers disagree")
    if not job_name or not subdomain:
        raise ConfigError("the job name and the headless Service (subdomain) must be set")
    return {
        "cluster": {"worker": worker_hosts(job_name, subdomain, workers, port, namespace)},
        "task": {"type": "worker", "index": index},
    }


def _int(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ConfigError(f"the environment variable {name} is not set")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    return tf_config(
        index=_int(environ, "JOB_COMPLETION_INDEX"),
        workers=_int(environ, "TFIC_TF_WORKERS"),
        job_name=environ.get("TFIC_TF_JOB_NAME", ""),
        subdomain=environ.get("TFIC_TF_SUBDOMAIN", ""),
        port=_int(environ, "TFIC_TF_PORT", DEFAULT_PORT),
        namespace=environ.get("TFIC_TF_NAMESPACE", ""),
    )


def main(argv: Sequence[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("usage: tf_config.py COMMAND [ARG ...]", file=sys.stderr)
        return 2
    try:
        config = from_environment(os.environ)
    except ConfigError as exc:
        print(f"tf_config: {exc}", file=sys.stderr)
        return 2
    os.environ["TF_CONFIG"] = json.dumps(config, separators=(",", ":"))
    print(f"tf_config: worker {config['task']['index']} of {config['cluster']['worker']}", file=sys.stderr, flush=True)
    os.execvp(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
