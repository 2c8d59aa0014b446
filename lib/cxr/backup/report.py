"""What one backup run did, for the CLI (``lines``) and the notebook (the frames)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from cxr.stores.backup_reader import Manifest
from cxr.stores.layout import BackupLayout


@dataclass
class BackupReport:
    run_id: str | None
    layout: BackupLayout
    before: datetime
    dry_run: bool
    planned: dict[str, int]
    pending_runs: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    manifest: Manifest | None = None
    verification: list[dict[str, Any]] = field(default_factory=list)
    purged: dict[str, int] | None = None
    purge_refused: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def counts_frame(self) -> pd.DataFrame:
        rows = [{"what": f"planned {k}", "value": v} for k, v in self.planned.items()]
        if self.manifest is not None:
            rows += [{"what": f"written {k}", "value": v} for k, v in self.manifest.summary.items() if isinstance(v, int)]
            rows.append({"what": "files written", "value": len(self.manifest.files)})
        rows += [{"what": f"purged {k}", "value": v} for k, v in (self.purged or {}).items()]
        return pd.DataFrame(rows)

    def partitions_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.manifest.partitions if self.manifest is not None else [])

    def verification_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.verification, columns=["run_id", "check", "expected", "actual", "ok"])

    def lines(self) -> list[str]:
        """A short human report (the CLI prints it)."""
        out = [f"before {self.before.isoformat(sep=' ')} (UTC), layout {self.layout}"
               + (" [dry run: nothing written or deleted]" if self.dry_run else "")]
        p = self.planned
        out.append(f"to back up: {p['transactions']} transactions of {p['images']} images")
        if self.cleaned:
            out.append(f"removed {len(self.cleaned)} incomplete run(s) left by a crash")
        if self.pending_runs:
            out.append(f"pending (written, not yet purged): {', '.join(self.pending_runs)}")
        if self.manifest is not None:
            s = self.manifest.summary
            out.append(f"wrote run {self.manifest.run_id}: {s['rows']} rows, {s['transactions']} transactions, "
                       f"{s['boxes']} boxes, {s['empty_transactions']} without boxes, "
                       f"{len(self.manifest.files)} files in {len(self.manifest.partitions)} partitions")
        if self.verification:
            bad = [c for c in self.verification if not c["ok"]]
            runs = sorted({c["run_id"] for c in self.verification})
            out.append(f"verified {len(runs)} run(s): " + ("OK" if not bad else f"{len(bad)} checks FAILED"))
        if self.purged is not None:
            out.append("purged from the DB: " + ", ".join(f"{v} {k}" for k, v in self.purged.items()))
        elif self.purge_refused:
            out.append(self.purge_refused)
        return out
