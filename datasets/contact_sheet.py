"""A contact sheet: a few identities, each a row of visible then infrared images.

Used for the committed picture of the synthetic set (reports/assets/synthetic_contact_sheet.png)
and handy to eyeball any dataset an adapter reads.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from vireid.datasets.errors import DatasetError

__all__ = ["contact_sheet"]

LABEL_WIDTH = 56
HEADER = 18
GAP = 2


def _spread(rows: pd.DataFrame, n: int) -> list[str]:
    """Up to ``n`` paths, taking cameras in turn so that every camera shows."""
    by_cam = [list(g["path"]) for _, g in rows.sort_values("path").groupby("cam")]
    picked: list[str] = []
    while len(picked) < n and any(by_cam):
        for paths in by_cam:
            if paths and len(picked) < n:
                picked.append(paths.pop(0))
    return picked


def contact_sheet(root, out, n_ids: int = 6, dataset: str = "sysu", per_modality: int = 4, split: int = 1,
                  tile: tuple[int, int] = (96, 48)) -> Path:
    """Write a PNG of ``n_ids`` identities seen in both modalities (lowest ids first) with
    ``per_modality`` visible then ``per_modality`` infrared images each, tiles of ``tile``
    = (height, width) pixels. Returns the output path."""
    from PIL import Image, ImageDraw

    from vireid.datasets.manifest import read_layout
    from vireid.common.io import atomic_save

    root = Path(root)
    records = read_layout(dataset, root, split).records
    both = records.groupby("pid")["modality"].nunique()
    pids = sorted(both.index[both == 2])[:n_ids]
    if not pids:
        raise DatasetError(f"{root}: no identity has images in both modalities")
    th, tw = tile
    cols = 2 * per_modality
    sheet = Image.new("RGB", (LABEL_WIDTH + cols * (tw + GAP), HEADER + len(pids) * (th + GAP)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((LABEL_WIDTH, 3), "visible", fill="black")
    draw.text((LABEL_WIDTH + per_modality * (tw + GAP), 3), "infrared", fill="black")
    for row, pid in enumerate(pids):
        y = HEADER + row * (th + GAP)
        draw.text((4, y + th // 2 - 6), f"id {pid}", fill="black")
        mine = records[records["pid"] == pid]
        for block, modality in enumerate(("visible", "infrared")):
            for i, rel in enumerate(_spread(mine[mine["modality"] == modality], per_modality)):
                with Image.open(root / rel) as im:
                    image = im.convert("RGB").resize((tw, th), Image.BILINEAR)
                sheet.paste(image, (LABEL_WIDTH + (block * per_modality + i) * (tw + GAP), y))
    out = Path(out)
    atomic_save(out, lambda tmp: sheet.save(tmp, format="PNG", optimize=True), suffix=".png")
    return out
