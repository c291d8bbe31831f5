"""technique=sensitivity's part of the report (compressor/report/build.py calls it through
Sensitivity.summarize): the scans' plots."""

import shutil
from pathlib import Path


def plots(runs: list[dict], out: Path) -> str:
    """The sensitivity scans' PNGs copied beside the sweep's plots, and the markdown that links them."""
    files = []
    for r in runs:
        folder = Path(r["_path"]).parent
        for png in sorted(folder.glob("sensitivity_*.png")):
            target = out / f"{png.stem}_{r['run']['dataset']}_{r['run']['model']}_seed{r['run'].get('seed')}.png"
            if target.resolve() != png.resolve():
                shutil.copyfile(png, target)
            files.append(target)
    if not files:
        return ""
    return (
        "\n## Per-layer sensitivity (technique=sensitivity; validation drop, no fine-tuning)\n\n"
        + "\n".join(f"![{p.stem}]({p.name})" for p in files)
        + "\n"
    )
