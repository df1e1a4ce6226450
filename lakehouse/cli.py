"""`lakehouse` command line: generate sample data, run the pipeline, inspect tables, docs.

Examples:
    lakehouse generate --days 3
    lakehouse medallion --start 2026-01-01 --end 2026-01-03
    lakehouse medallion --start 2026-01-02 --sources events --layers bronze,silver
    lakehouse tables
    lakehouse history silver/events
    lakehouse sql "select event_type, count(*) from silver.events group by 1"
    lakehouse restore silver/events --version 3
    lakehouse demo
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lakehouse.errors import ExitCode, LakehouseError, exit_code_of
from lakehouse.settings import Settings, get_settings

DEMO_START = dt.date(2026, 1, 1)


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


def _sources(value: str) -> list[str]:
    from lakehouse.errors import ConfigError
    from lakehouse.pipeline import check_sources

    try:
        return list(check_sources([v.strip() for v in value.split(",") if v.strip()]))
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tables(value: str) -> list[str]:
    from lakehouse.errors import ConfigError
    from lakehouse.pipeline import LAYERS, plan_tables

    names = [v.strip() for v in value.split(",") if v.strip()]
    try:
        plan_tables(names, LAYERS, None)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return names


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.datagen import GenConfig, generate

    landing = Path(settings.storage.landing)
    cfg = GenConfig(
        start=args.start,
        days=args.days,
        seed=args.seed,
        events_per_day=args.events_per_day,
        orders_per_day=args.orders_per_day,
    )
    t0 = time.monotonic()
    manifest = generate(landing, cfg, progress=lambda line: print(f"  generated {line}", flush=True))
    total = sum(v.lines for d in manifest.days.values() for v in d.values())
    print(f"wrote {total} lines for {args.days} day(s) under {landing} in {time.monotonic() - t0:.1f}s")
    return 0


def cmd_medallion(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.prefect_env import command_api_server, direct_run, wait_for_api

    with command_api_server():  # starts while the flow is imported (in a demo: already running)
        from flows.medallion import medallion

        wait_for_api()
        with direct_run():
            rows = medallion(
                start_date=args.start,
                end_date=args.end or args.start,
                layers=args.layers.split(","),
                full_refresh=args.full_refresh,
                dbt_marts=args.dbt_marts,
                sources=getattr(args, "sources", None),
                tables=getattr(args, "tables", None),
            )
    print(f"{'layer.table':32} {'read':>9} {'written':>9} {'version':>8} {'seconds':>8}")
    for r in rows:
        print(
            f"{r['layer'] + '.' + r['table']:32} {r['rows_read'] if r['rows_read'] is not None else '':>9} "
            f"{r['rows_written']:>9} {r['version'] if r['version'] is not None else '':>8} {r['duration_s']:>8}"
        )
    print(_where_runs_are())
    return 0


def _where_runs_are() -> str:
    """Where this process's flow runs are recorded, and how to look at them."""
    import os

    if os.environ.get("PREFECT_API_URL"):
        return f"flow run recorded on the Prefect server {os.environ['PREFECT_API_URL']}"
    return (
        f"flow run recorded in {os.environ.get('PREFECT_HOME', '~/.prefect')}; "
        "`make ui` shows it at http://127.0.0.1:4200"
    )


def _run_short_job(settings: Settings, job: Any) -> int:
    """Run a short look-at-the-tables job, printing its output: in this process's Spark when one
    runs (dbt's local target, with spark.mode=submit, leaves its Spark running), else on the warm
    local Spark (``spark.mode=warm``, the default), else with spark-submit. Always on this machine,
    whatever ``backend`` is: reading a table needs no cluster."""
    from lakehouse.backends.local import LocalBackend, live_spark_session
    from lakehouse.backends.warm import WarmBackend

    def out(line: str) -> None:
        print(line, flush=True)

    if live_spark_session() is not None:
        LocalBackend(settings).run_in_process(job, log=out)
    elif settings.spark.mode == "warm":
        WarmBackend(settings).run(job, log=out)
    else:
        print(f"starting a local Spark driver for {job.name} (about 15 s) ...", file=sys.stderr, flush=True)
        LocalBackend(settings).run(job, log=out)
    return 0


def cmd_show_tables(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.pipeline import show_tables_job

    job = show_tables_job(settings, table=getattr(args, "table", "silver/users"), as_of=getattr(args, "as_of", None))
    return _run_short_job(settings, job)


def _inspect(settings: Settings, command: str, **kwargs: Any) -> int:
    from lakehouse.pipeline import inspect_job

    # bad arguments fail here, before Spark starts
    return _run_short_job(settings, inspect_job(settings, command, **kwargs))


def cmd_tables(args: argparse.Namespace, settings: Settings) -> int:
    return _inspect(settings, "tables")


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    return _inspect(settings, "history", table=args.table, limit=args.limit)


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    return _inspect(settings, "sql", query=args.query, limit=args.limit)


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.prefect_env import command_api_server, direct_run, wait_for_api

    target = f"version {args.version}" if args.version is not None else f"timestamp {args.timestamp}"
    print(f"restoring {args.table} to {target} (a restore-table flow run) ...", file=sys.stderr, flush=True)
    with command_api_server():
        from flows.maintenance import restore_table

        wait_for_api()
        with direct_run():
            metrics = restore_table(table=args.table, version=args.version, timestamp=args.timestamp)
    for m in metrics:
        if m.get("operation") == "RESTORE":
            print(f"{m['layer']}.{m['table']}: restored to {target}, version {m['version_before']} -> {m['version']}")
    print(_where_runs_are())
    return 0


def _start_warm_spark_meanwhile(settings: Settings) -> None:
    """Start the warm local Spark in the background while the demo generates data and Prefect's
    server starts (its first run would otherwise wait for it). A failure is left to that run,
    which starts it itself and reports why it cannot."""
    import threading

    from lakehouse.backends.local import LocalBackend
    from lakehouse.backends.warm import WarmServer

    def start() -> None:
        with contextlib.suppress(Exception):
            WarmServer(LocalBackend(settings)).ensure(lambda line: print(line, flush=True))

    threading.Thread(target=start, name="warm-spark-start", daemon=True).start()


# dbt's saved parse of the project, under a local root's dbt artifacts (lakehouse.dbt.artifacts_dir)
DBT_PARSE_CACHE = Path("dbt") / "target" / "partial_parse.msgpack"


def reset_demo_root(root: Path) -> None:
    """Remove the demo's tables, landing files, catalog and dbt artifacts under `root`, but keep
    dbt's saved parse of the project: it describes the project's files, not the tables, and dbt
    checks it against them, so the next dbt run parses only what changed (measured in the
    demo's dbt log on 2 cores: 2.6-3.0 s from dbt's start to its parsed project with a full
    parse, about 1 s with the saved one)."""
    import shutil

    for part in ("landing", "warehouse", "metastore"):
        shutil.rmtree(root / part, ignore_errors=True)
    keep = root / DBT_PARSE_CACHE
    saved = keep.read_bytes() if keep.is_file() else None
    shutil.rmtree(root / "dbt", ignore_errors=True)
    if saved is not None:
        keep.parent.mkdir(parents=True)
        keep.write_bytes(saved)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    root = Path(settings.storage.root)
    if root.exists() and not args.keep:
        # the tables, and the dbt catalog and artifacts that describe them (all but dbt's saved parse)
        reset_demo_root(root)
    # the last three days up to yesterday, so the freshness SLAs of the contracts hold
    first = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3)
    gen = argparse.Namespace(start=first, days=3, seed=42, events_per_day=2000, orders_per_day=400)
    if settings.backend == "local" and settings.spark.mode == "warm":
        _start_warm_spark_meanwhile(settings)
    from lakehouse.prefect_env import command_api_server

    with command_api_server():  # Prefect's API server for both runs, starting while the data is made
        print(f"== 1/3 generating 3 days of landing data ({first} .. {first + dt.timedelta(days=2)})")
        cmd_generate(gen, settings)
        print(f"== 2/3 medallion flow, first day ({first}), then the next two days incrementally")
        runs = ((first, first), (first + dt.timedelta(days=1), first + dt.timedelta(days=2)))
        for start, end in runs:
            # the dbt marts once, on the last run (incremental marts over all three days)
            cmd_medallion(
                argparse.Namespace(
                    start=start,
                    end=end,
                    layers="bronze,silver,gold",
                    full_refresh=False,
                    dbt_marts=None if end == runs[-1][1] else False,
                ),
                settings,
            )
    print("== 3/3 tables, row counts and a time-travel read (silver.users at version 0 vs latest)")
    code = cmd_show_tables(args, settings)
    if settings.backend == "local" and settings.spark.mode == "warm":
        idle = settings.spark.warm_idle_seconds
        print(
            f"The warm local Spark stays up for your next runs: it stops after {idle / 60:g} min without one, "
            "or now with `make down`."
        )
    return code


def cmd_contracts(args: argparse.Namespace, settings: Settings) -> int:
    from spark_jobs.contract import ContractError, load_contracts

    try:
        contracts = load_contracts(Path(args.dir))
    except ContractError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    for c in contracts.values():
        rules = sum(1 + len(f.constraints) + (f.allowed_values is not None) for f in c.fields) + len(c.quality)
        print(
            f"{c.name} v{c.version} ({c.owner}): {len(c.fields)} columns, key {c.primary_key}, "
            f"{rules} rules, new columns: {c.evolution.new_columns}, freshness: {c.sla.freshness or '-'}"
        )
    return 0


def cmd_settings_doc(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.settings_doc import render, write_readme

    if args.write:
        write_readme(Path(args.write))
        print(f"updated the generated sections (settings, exit codes, rule names) of {args.write}")
    else:
        print(render())
    return 0


def cmd_blocks(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.blocks import ensure_workspace

    ensure_workspace(settings, log=lambda line: print(line, flush=True))
    print(
        f"deploy with: prefect deploy --all --prefect-file deployments/prefect.yaml "
        f"(work pool {settings.deploy.work_pool})"
    )
    return 0


def cmd_render(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.k8s.cli import render_command

    return render_command(args, settings)


def exit_codes_help() -> str:
    """The exit codes, one line each (``lakehouse --help``; the README has the same table)."""
    lines = ["exit codes:"]
    lines += [f"  {int(code):>3}  {code.meaning}" for code in ExitCode]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lakehouse",
        description=__doc__,
        epilog=exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="write N days of sample landing data")
    g.add_argument(
        "--start", type=_date, default=DEMO_START, help="first landing date, YYYY-MM-DD (default: %(default)s)"
    )
    g.add_argument("--days", type=int, default=3, help="number of days (default: %(default)s)")
    g.add_argument(
        "--seed", type=int, default=42, help="random seed: the same seed writes the same files (default: %(default)s)"
    )
    g.add_argument("--events-per-day", type=int, default=2000, help="events per day (default: %(default)s)")
    g.add_argument("--orders-per-day", type=int, default=400, help="orders per day (default: %(default)s)")
    g.set_defaults(fn=cmd_generate)
    m = sub.add_parser("medallion", help="run the medallion flow for a date or range")
    m.add_argument("--start", type=_date, required=True, help="first landing date, YYYY-MM-DD")
    m.add_argument("--end", type=_date, help="last landing date, inclusive (default: --start)")
    m.add_argument(
        "--layers",
        default="bronze,silver,gold",
        help="comma-separated layers to run, in pipeline order (default: %(default)s)",
    )
    m.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild the date range from its inputs instead of applying only what is new",
    )
    m.add_argument(
        "--dbt-marts",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="build the dbt marts after gold (default: LAKEHOUSE_PIPELINE__DBT_MARTS)",
    )
    only = m.add_mutually_exclusive_group()
    only.add_argument(
        "--sources",
        type=_sources,
        help="comma-separated sources for bronze and silver, of orders, users, "
        "events (default: all); gold rebuilds its tables for the range either way",
    )
    only.add_argument(
        "--tables",
        type=_tables,
        help="comma-separated layer/table to run instead, e.g. silver/orders,gold/daily_revenue: "
        "their layers, bronze and silver for the sources named, the gold tables named",
    )
    m.set_defaults(fn=cmd_medallion)
    i = sub.add_parser("show-tables", help="print tables, row counts and a time-travel read")
    i.add_argument("--table", default="silver/users", help="layer/table of the time-travel read")
    i.add_argument(
        "--as-of",
        help="the time-travel read's version number or timestamp (e.g. "
        "2026-01-02T10:00:00Z: the version committed at or before it); default version 0",
    )
    i.set_defaults(fn=cmd_show_tables)
    t = sub.add_parser("tables", help="every Delta table: rows, version, files, size and last commit")
    t.set_defaults(fn=cmd_tables)
    h = sub.add_parser("history", help="a table's commits: version, time, operation, metrics, the run")
    h.add_argument("table", help="layer/name, e.g. silver/events")
    h.add_argument("--limit", type=int, default=20, help="commits to show, newest first (default: %(default)s)")
    h.set_defaults(fn=cmd_history)
    q = sub.add_parser("sql", help="run a Spark SQL query over the tables (layer.table names them)")
    q.add_argument(
        "query",
        help="Spark SQL; silver.events is the table silver/events, e.g. "
        '"select event_type, count(*) from silver.events group by 1"',
    )
    q.add_argument("--limit", type=int, default=50, help="rows to print (default: %(default)s)")
    q.set_defaults(fn=cmd_sql)
    rs = sub.add_parser("restore", help="restore a table to a version or a timestamp (a restore-table flow run)")
    rs.add_argument("table", help="layer/name, e.g. silver/events")
    to = rs.add_mutually_exclusive_group(required=True)
    to.add_argument("--version", type=int, help="the version to restore (see `lakehouse history TABLE`)")
    to.add_argument(
        "--timestamp", help="restore the version committed at or before this time, e.g. 2026-01-02T10:00:00Z"
    )
    rs.set_defaults(fn=cmd_restore)
    d = sub.add_parser("demo", help="generate 3 days, run the flow, inspect the tables")
    d.add_argument("--keep", action="store_true", help="keep existing data under the root")
    d.set_defaults(fn=cmd_demo)
    c = sub.add_parser("contracts", help="validate the data contracts and summarise them")
    c.add_argument(
        "--dir",
        default=str(Path(__file__).resolve().parents[1] / "contracts"),
        help="directory of the contract YAML files (default: the project's contracts/)",
    )
    c.set_defaults(fn=cmd_contracts)
    s = sub.add_parser("settings-doc", help="print the settings reference (Markdown)")
    s.add_argument("--write", metavar="README", help="replace the reference section of this file")
    s.set_defaults(fn=cmd_settings_doc)
    b = sub.add_parser(
        "blocks", help="create/update the Prefect blocks, work pools, variable and automation from the settings"
    )
    b.set_defaults(fn=cmd_blocks)
    from lakehouse.kafka_cli import add_commands as add_kafka_commands

    add_kafka_commands(sub)
    from lakehouse.k8s.cli import add_arguments as add_render_arguments

    r = sub.add_parser(
        "render", help="print the SparkApplication manifest(s) of a job (--dry-run: as the API server would store them)"
    )
    add_render_arguments(r)
    r.set_defaults(fn=cmd_render)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lakehouse`` command."""
    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"error: invalid settings (LAKEHOUSE_* environment or .env):\n{exc}", file=sys.stderr)
        return ExitCode.CONFIG
    # before Prefect loads: runs land in the project's Prefect home, the one `make ui` serves
    from lakehouse.prefect_env import apply as apply_prefect_defaults

    apply_prefect_defaults()
    try:
        return int(args.fn(args, settings))
    except LakehouseError as exc:
        code = exit_code_of(exc)
        print(f"error: {exc}", file=sys.stderr)
        if code != ExitCode.JOB_FAILED:
            print(f"exit code {int(code)}: {code.meaning}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
