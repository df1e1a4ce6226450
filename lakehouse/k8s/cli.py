"""`lakehouse render`: the SparkApplication manifest(s) of a job, optionally server-side dry-run.

Examples:
    lakehouse render medallion --start 2026-01-01 --end 2026-01-03
    lakehouse render streaming                       # the long-running Kafka stream
    lakehouse render --spec job.yaml                 # any SparkJob (JSON or YAML)
    lakehouse render medallion --start 2026-01-01 --dry-run   # ask the API server
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import yaml
from pydantic import ValidationError

from lakehouse.errors import ConfigError
from lakehouse.jobs import SparkJob
from lakehouse.settings import Settings

JOBS = ("medallion", "show-tables", "streaming")


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


def add_arguments(r: argparse.ArgumentParser) -> None:
    """The arguments of ``lakehouse render`` (the sub-parser itself lives in lakehouse/cli.py)."""
    r.description = __doc__
    r.formatter_class = argparse.RawDescriptionHelpFormatter
    r.add_argument(
        "job", nargs="?", choices=JOBS, default="medallion", help="a job of the project (default: medallion)"
    )
    r.add_argument("--spec", type=Path, help="render this SparkJob (JSON or YAML) instead")
    r.add_argument(
        "--start",
        type=_date,
        default=dt.date.today() - dt.timedelta(days=1),
        help="medallion: first landing date (default: yesterday)",
    )
    r.add_argument("--end", type=_date, help="medallion: last landing date (default: --start)")
    r.add_argument("--layers", default="bronze,silver,gold", help="medallion: layers to run")
    r.add_argument(
        "--flow-run-id", default="manual", help="flow run id the name and labels derive from (default: manual)"
    )
    r.add_argument("--attempt", type=int, default=1, help="task attempt (default: 1)")
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="server-side dry-run: print what the API server would store, or its reasons for refusing",
    )


def _jobs(args: argparse.Namespace, settings: Settings) -> list[SparkJob]:
    if args.spec is not None:
        try:
            data = yaml.safe_load(args.spec.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the SparkJob spec {args.spec}: {exc}") from exc
        try:
            return [SparkJob.model_validate(data)]
        except ValidationError as exc:
            raise ConfigError(f"invalid SparkJob spec in {args.spec}: {exc}") from None
    if args.job == "medallion":
        from lakehouse.pipeline import medallion_jobs

        return medallion_jobs(
            args.layers.split(","), settings, start=args.start, end=args.end or args.start, run_id=args.flow_run_id
        )
    if args.job == "show-tables":
        from lakehouse.pipeline import show_tables_job

        return [show_tables_job(settings)]
    from lakehouse.streaming import streaming_job

    return [streaming_job(settings, continuous=True)]


def render_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the manifests (multi-document YAML) of the chosen job(s)."""
    from lakehouse.backends.kubernetes import KubernetesBackend
    from lakehouse.k8s.render import to_yaml
    from lakehouse.k8s.runinfo import RunInfo

    run = RunInfo(flow_run_id=args.flow_run_id, attempt=args.attempt)
    backend = KubernetesBackend(settings, run_info=lambda: run, on_report=lambda _: None)
    manifests = []
    for job in _jobs(args, settings):
        if args.dry_run:
            stored = backend.dry_run(job)
            stored.get("metadata", {}).pop("managedFields", None)
            manifests.append(stored)
        else:
            manifests.append(backend.render(job))
    print(to_yaml(manifests), end="")
    return 0
