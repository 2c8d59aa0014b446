"""``cxr monitor``: the model monitor (performance against reviewed labels, drift against the reference)."""

from __future__ import annotations

import typer


def monitor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Precision, recall and mAP@0.5 against reviewed labels per model version and week, and drift
    (PSI of scores and image intensities) over the last CXR_MONITOR_WINDOW_DAYS days.

    Exits 4 when a drift figure is above CXR_DRIFT_THRESHOLD (default 0.25).
    """
    import json

    from cxr.monitor.job import gather, raise_on_alert

    report = gather()
    if as_json:
        typer.echo(json.dumps({"performance": report.performance.to_dict("records"),
                               "drift": report.drift.to_dict("records"), "notes": report.notes}, default=str, indent=2))
    else:
        typer.echo("performance against reviewed labels:")
        typer.echo(report.performance.to_string(index=False) if len(report.performance) else "  none")
        typer.echo("drift (PSI):")
        typer.echo(report.drift.to_string(index=False) if len(report.drift) else "  none")
        for note in report.notes:
            typer.echo(f"note: {note}")
    raise_on_alert(report)


def register(root: typer.Typer) -> None:
    root.command("monitor")(monitor)
