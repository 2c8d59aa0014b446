"""``cxr review``: radiologists' reviews of predictions (import a reading study; list reviews)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

review = typer.Typer(help="Radiologists' reviews of predictions: import a reading study (VinDr-CXR CSV), show reviews.",
                     no_args_is_help=True)


@review.command("import")
def import_cmd(
    csv_file: Path = typer.Argument(..., help="VinDr-CXR CSV: image_id, class_name, class_id, rad_id, x_min, y_min, "
                                    "x_max, y_max ('No finding' rows: no box)."),
    images: Path = typer.Option(..., "--images", help="Folder with one file per image_id (<image_id>.png/.jpg/.dcm/"
                                ".dicom), matched to stored images by content, not by name."),
    reviewer: str = typer.Option(..., "--reviewer", help="The cxr user (radiologist or admin) the reviews are by."),
    classes: Optional[str] = typer.Option(None, help="Comma-separated class names by class_id (default: the "
                                          "configured model's)."),
) -> None:
    """Import reviewed labels. All or nothing: an unknown image, a box outside its image or an unknown
    class refuses the file (exit 3) and nothing is stored."""
    from cxr.errors import ConfigError
    from cxr.model.registry import read_metadata, resolve_model_dir
    from cxr.review.importer import import_vindr
    from cxr.stores import db
    from cxr.stores.catalog import Stores

    stores = Stores.open()
    if classes:
        names = [c.strip() for c in classes.split(",") if c.strip()]
    else:
        s = stores.settings
        try:
            names = read_metadata(resolve_model_dir(s.models_dir, s.model_name, s.model_version)).classes
        except ConfigError as exc:
            raise ConfigError(f"no model to take the class list from ({exc}); pass --classes") from None
    with db.reading("importing reviews"):
        report = import_vindr(stores, csv_file, images, reviewer, names)
    typer.echo(report.line())


@review.command("show")
def show(transaction_id: int = typer.Argument(..., help="Transaction id."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The reviews of one transaction, oldest first, with each box's action and final box."""
    from cxr.review.store import reviews_of
    from cxr.stores import db

    with db.reading():
        rows = reviews_of(db.engine_from_settings(), transaction_id)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        typer.echo(f"transaction {transaction_id}: no review")
    for r in rows:
        typer.echo(f"review {r['review_id']} {r['time']:%Y-%m-%d %H:%M:%S} by user {r['reviewer_id']} "
                   f"({r['reviewer_role']}, {r['source']}): {r['verdict']}")
        for b in r["boxes"]:
            box = "" if b["x_min"] is None else f" [{b['x_min']:.1f}, {b['y_min']:.1f}, {b['x_max']:.1f}, {b['y_max']:.1f}]"
            typer.echo(f"  {b['action']:<8} pred {b['pred_bbox_id'] or '-':<6} {b['class_name'] or ''}{box}")


def register(root: typer.Typer) -> None:
    root.add_typer(review, name="review")
