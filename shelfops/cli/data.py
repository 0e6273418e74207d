"""`shelfops data ...`: generate, ingest, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shelfops.cli.common import console, load, reported_errors, say, split_overrides

app = typer.Typer(help="① data: ingest, validate, clean, label, split, pseudonymise; behaviour report.",
                  no_args_is_help=True)

Overrides = Annotated[list[str] | None, typer.Argument(help="key=value config overrides")]


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the shop's raw export")],
    config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
    overrides: Overrides = None,
    progress: bool = True,
) -> None:
    """Generate the built-in synthetic shop (catalogue, sessions, judgements, hidden truth)."""
    with reported_errors():
        from shelfops.sim import shop

        _, ov = split_overrides(overrides)
        cfg = load(config, ov)
        _, summary = shop.export(cfg.data.synthetic, out, progress=progress)
        console.print_json(json.dumps(summary, default=str))
        say(f"wrote the synthetic shop to {out}")


@app.command()
def ingest(
    paths: Annotated[list[str] | None, typer.Argument(help="input files, then key=value overrides")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="dataset folder to write")] = Path("runs/data"),
    format: Annotated[str | None, typer.Option(
        "--format", "-f",
        help="csv | tsv | parquet | jsonl | homedepot | amazon | diginetica | synthetic")] = None,
    table: Annotated[str | None, typer.Option(help="items | events | judgements (generic formats)")] = None,
    map: Annotated[list[str] | None, typer.Option(
        "--map", help="canonical=file_column, repeatable (generic formats)")] = None,
    item_map: Annotated[list[str] | None, typer.Option(
        "--item-map", help="canonical item column=file column carried by the same rows")] = None,
    encoding: Annotated[str | None, typer.Option()] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
    progress: bool = True,
) -> None:
    """Turn catalogue / behaviour / judgement files into clean, split, pseudonymised tables.

    Every rejected row lands in quarantine.parquet with file, row, column and reason; the
    manifest reconciles rows in = kept + quarantined per table and file.
    """
    with reported_errors():
        from shelfops.data import recipe

        files, ov = split_overrides(paths)
        if format and format != "synthetic":
            if not files:
                raise typer.BadParameter("give at least one input PATH", param_hint="PATH")
            src = {"format": format, "paths": files}
            if table:
                src["table"] = table
            if map:
                src["columns"] = dict(kv.split("=", 1) for kv in map)
            if item_map:
                src["item_columns"] = dict(kv.split("=", 1) for kv in item_map)
            if encoding:
                src["encoding"] = encoding
            from shelfops.config.load import load_config

            base = load_config(config, []).model_dump(mode="json") if config else {"data": {}}
            base["data"]["sources"] = [src]
            base["data"].pop("synthetic", None)
            cfg = load(None, ov, default=base)
        elif files and config is not None:
            cfg = _reading(files, config, ov)
        elif files:
            raise typer.BadParameter("say how to read the files: --format (and --table, --map) or a config "
                                     "with one data source (-c)", param_hint="PATH")
        else:
            cfg = load(config, ov)
        specs = summary = None
        if not cfg.data.sources:  # no files: the built-in synthetic shop's export, written beside
            from shelfops.sim import shop

            raw = out.parent / f"{out.name}-source"
            say(f"generating the synthetic shop into {raw} (the shop's raw export)")
            specs, summary = shop.export(cfg.data.synthetic, raw, progress=progress)
        recipe.run(cfg.data, out, specs=specs, source_summary=summary, progress=progress, say=say,
                   config_dump=cfg.model_dump(mode="json"))
        say(f"[green]wrote[/] {out}  (manifest.json, quarantine.parquet, report/report.html)")


def _reading(files: list[str], config: Path, overrides: list[str]):
    """``config`` with its one data source reading ``files``: a config such as
    configs/examples/generic-judgements.yaml says how to read a shop's file, the command which file."""
    base = load(config, overrides, check_files=False).model_dump(mode="json")
    sources = base["data"]["sources"]
    if len(sources) != 1:
        raise typer.BadParameter(f"{config} has {len(sources)} data sources, so the files named here replace "
                                 "none of them: set data.sources.N.paths=[...] instead", param_hint="PATH")
    sources[0]["paths"] = [str(Path(f).absolute()) for f in files]
    return load(None, [], default=base)


@app.command()
def report(
    dataset: Annotated[Path, typer.Argument(help="a dataset folder written by `data ingest`")],
    out: Annotated[Path | None, typer.Option("--out", "-o")] = None,
    category: Annotated[str | None, typer.Option(help="audience export for this top-level category")] = None,
    audience_size: int = 100,
) -> None:
    """Behaviour report: funnel, queries with low CTR / no results, category affinity,
    RFM segments and a marketing audience export (JSON + HTML with charts)."""
    with reported_errors():
        from shelfops.artifacts import read_manifest
        from shelfops.data.report.dataset import report_dataset

        read_manifest(dataset)
        written = report_dataset(dataset, out or dataset / "report", audience_category=category,
                                 audience_size=audience_size)
        for name, path in written.items():
            say(f"{name}: {path}")
