"""Copy one figure per analysis from a real study run into docs/figures/ (small PNGs).

The figures on the analysis pages are outputs of the embedded study, never drawn for the docs:

    make demo                                  # writes results/embedded/<analysis>/*.png
    python docs/figures.py results/embedded    # copies the chosen ones, 900 px wide at most

Each copy keeps its source path in the PNG's ``Source`` text chunk.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, PngImagePlugin

#: analysis -> figure file of the embedded study shown on its page.
CHOSEN = {
    "find_super_neurons": "accuracy_mini-llava-smollm2.png",
    "sav_comparison": "sav_vs_sn_mini-llava-smollm2_shapes-count.png",
    "robustness": "shift_drop_mini-llava-smollm2.png",
    "cross_model_overlap": "relative_depth.png",
    "early_exit": "early_exit_mini-llava-smollm2_shapes-count.png",
    "causal": "effect_micro-llava_digits.png",
}
WIDTH = 900


def copy(results: Path, out: Path) -> list[Path]:
    """Downscale each chosen figure of ``results`` into ``out``; name a missing one."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for analysis, name in CHOSEN.items():
        src = results / analysis / name
        if not src.exists():
            raise SystemExit(f"{src} is missing: run the study first (make demo), or update "
                             f"CHOSEN in {__file__} to a figure it wrote")
        image = Image.open(src).convert("RGB")
        if image.width > WIDTH:
            image = image.resize((WIDTH, round(image.height * WIDTH / image.width)),
                                 Image.LANCZOS)
        info = PngImagePlugin.PngInfo()
        info.add_text("Source", str(src))
        dest = out / f"{analysis}.png"
        image.save(dest, optimize=True, pnginfo=info)
        written.append(dest)
    return written


if __name__ == "__main__":
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "results/embedded")
    for path in copy(results, Path(__file__).resolve().parent / "figures"):
        sys.stdout.write(f"{path} ({path.stat().st_size // 1024} kB)\n")
