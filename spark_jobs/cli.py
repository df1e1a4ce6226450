"""Command-line arguments shared by the batch entrypoints."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from spark_jobs.contract import DEFAULT_CONTRACTS_DIR, ContractError, load_contracts

CONFIG_ERROR_EXIT = 78
"""Exit code of a driver that found its configuration invalid, e.g. a contract file (EX_CONFIG);
equals lakehouse.errors.CONFIG_ERROR_EXIT (the driver image does not need the lakehouse package)."""

DEFAULT_PARALLELISM = 3
"""Tables of a layer processed side by side: every source (or gold table) of a layer at once."""


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {value!r}") from None


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {value!r}")
    return names


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return n


def batch_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """Parser for ``--root --start --end [--sources] [--run-id] [--full-refresh] [--parallelism]``."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--root", required=True, help="Lakehouse root (local path or s3a:// URI).")
    p.add_argument("--start", required=True, type=_date, help="First landing date (YYYY-MM-DD).")
    p.add_argument("--end", required=True, type=_date, help="Last landing date, inclusive.")
    p.add_argument(
        "--sources",
        type=_names,
        default=None,
        help="Comma-separated sources (default: every source with a contract).",
    )
    p.add_argument(
        "--gold-tables",
        type=_names,
        default=None,
        help="Comma-separated gold tables to rebuild (default: every gold table; gold only).",
    )
    p.add_argument(
        "--contracts-dir",
        type=Path,
        default=DEFAULT_CONTRACTS_DIR,
        help="Directory of the data contracts (<source>.yaml).",
    )
    p.add_argument("--run-id", default="manual", help="Orchestrator run id, kept in lineage.")
    p.add_argument(
        "--full-refresh",
        action="store_true",
        help="Rebuild the date range from its inputs instead of applying only what is new.",
    )
    p.add_argument(
        "--interpret-below-mb",
        type=float,
        default=0.0,
        help="Run the queries interpreted, without code generation, when the tables' files plus the "
        "run's landing input are smaller than this many MiB (0: never).",
    )
    p.add_argument(
        "--parallelism",
        type=_positive,
        default=DEFAULT_PARALLELISM,
        help="Tables of a layer processed side by side (1: one after the other).",
    )
    return p


def check_batch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Check start <= end and the sources; add ``args.dates`` (every landing date in the range)
    and ``args.contracts`` (the contract of each source, in order)."""
    if args.start > args.end:
        parser.error(f"--start {args.start} is after --end {args.end}")
    try:
        contracts = load_contracts(args.contracts_dir)
    except ContractError as exc:  # a configuration error, not a usage one: exit 78, not 2
        print(f"{parser.prog}: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(CONFIG_ERROR_EXIT)
    args.sources = args.sources or list(contracts)
    unknown = [s for s in args.sources if s not in contracts]
    if unknown:
        parser.error(f"unknown source(s) {unknown}; valid sources (from {args.contracts_dir}): {', '.join(contracts)}")
    args.contracts = {s: contracts[s] for s in args.sources}
    args.dates = [args.start + dt.timedelta(days=i) for i in range((args.end - args.start).days + 1)]
    return args


def parse_batch(prog: str, description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check the batch arguments."""
    p = batch_parser(prog, description)
    return check_batch(p, p.parse_args(argv))


def table_path(root: str, layer: str, table: str) -> str:
    """``<root>/warehouse/<layer>/<table>``."""
    return "/".join([root.rstrip("/"), "warehouse", layer, table])


def landing_root(root: str, source: str) -> str:
    """``<root>/landing/<source>``: where the files of ``source`` land, one folder per date."""
    return "/".join([root.rstrip("/"), "landing", source])


def landing_dir(root: str, source: str, date: dt.date) -> str:
    """``<root>/landing/<source>/date=YYYY-MM-DD``."""
    return f"{landing_root(root, source)}/date={date.isoformat()}"
