"""Neuron cards of the top SNs of every (model, task) cell, written beside an analysis's figures.

:func:`write_cards` reselects each cell's SNs from its (reused) activation stores with the
analysis's own options, draws :func:`sn_interp.plotting.neuron_card` for the top ``n`` with the
test split's values and images, saves them as ``card_<model>_<task>_<rank>.png``/``.pdf`` and
adds them to the folder's ``figures.json``, so the report shows them with the other figures.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any  # Any: values of a JSON record

from sn_interp.analyses import _data, _outputs
from sn_interp.analyses._common import FIGURES_FILE, StudyConfig, file_name, save_figure

log = logging.getLogger(__name__)


def cell_cards(cfg: StudyConfig, model: str, task: str, n: int) -> dict:
    """Figures of the top ``n`` SNs of one cell, by name."""
    from sn_interp.plotting import neuron_card

    vlm = _data.vlm(cfg, model)
    probe, test = _data.split(cfg, task)
    a_probe = _data.acts(cfg, vlm, probe, "probe")
    a_test = _data.acts(cfg, vlm, test, "test")
    found = _data.select(cfg, a_probe)  # the analysis's own selection
    return {f"card_{file_name(model)}_{file_name(task)}_{rank}":
            neuron_card(found, a_probe, rank, list(test), a_test)
            for rank in range(min(n, found.table.sizes["neuron"]))}


def write_cards(cfg: StudyConfig, folder: Path, n: int = 3) -> list[str]:
    """Draw and save the cards of every cell; list them in ``figures.json``; return names."""
    path = Path(folder) / FIGURES_FILE
    record: dict[str, Any] = (json.loads(path.read_text()) if path.exists()  # JSON
                              else {"figures": []})
    done = [f for f in record.get("figures", []) if f.startswith("card_")]
    if (record.get("cards_digest") == cfg.digest() and done
            and all((Path(folder) / f"{f}.png").exists() for f in done)):
        return done
    names = []
    for m in cfg.models:
        for t in cfg.tasks:
            for name, fig in cell_cards(cfg, m, t, n).items():
                save_figure(fig, folder, name)
                names.append(name)
    record["figures"] = [f for f in record.get("figures", []) if not f.startswith("card_")] \
        + names
    record["cards_digest"] = cfg.digest()
    _outputs.write_text(path, json.dumps(record) + "\n")
    log.info("wrote %d neuron cards in %s", len(names), folder)
    return names
