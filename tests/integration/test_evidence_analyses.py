"""find_super_neurons and sav_comparison carry the evidence columns; neuron cards are written."""

from __future__ import annotations

import json

import numpy as np

from sn_interp.analyses import find_super_neurons, sav_comparison

COMMON = ["--model", "tiny-llava", "--task", "shapes-color", "shapes-count", "--n", "48",
          "--shots", "3", "--test-size", "12", "--k", "4", "--no-progress"]


def test_find_super_neurons_evidence_tables_and_cards(tmp_path):
    out = find_super_neurons.main([*COMMON, "--stores", str(tmp_path / "stores"), "--out",
                                   str(tmp_path / "fsn"), "--zero-shot-mode", "first_token",
                                   "--n-perm", "30", "--stability-boot", "4", "--cards", "2"])
    import pandas as pd
    import xarray as xr

    head = pd.read_csv(out / "headline.csv")
    for col in ("SN best p", "SN best null", "SN top-4 p", "SN top-4 null", "stable SNs"):
        assert col in head.columns
    assert head[["SN best null", "SN top-4 null"]].apply(lambda c: c.between(0, 1)).all().all()
    ev = pd.read_csv(out / "evidence.csv")
    assert set(ev.classifier) == {"zero_shot", "sav", "sn_top1", "sn_topk"}
    sn = ev[ev.classifier != "zero_shot"]
    assert (sn["p vs zero-shot (Holm)"] >= sn["p vs zero-shot"] - 1e-12).all()
    assert ev[ev.classifier == "zero_shot"]["p vs zero-shot"].isna().all()
    assert len(pd.read_csv(out / "mcnemar.csv")) == 2 * 6  # 4 classifiers: 6 pairs per task
    with xr.open_dataset(out / "result.nc") as res:
        p = res.p_vs_zero_shot.sel(model="tiny-llava", classifier="sn_topk").values
        holm = res.p_vs_zero_shot_holm.sel(model="tiny-llava", classifier="sn_topk").values
        lo, hi = np.sort(p)
        assert np.allclose(np.sort(holm), [min(2 * lo, 1), max(min(2 * lo, 1), hi)])
    figs = json.loads((out / "figures.json").read_text())["figures"]
    cards = [f for f in figs if f.startswith("card_")]
    assert len(cards) == 4 and all((out / f"{c}.png").stat().st_size > 0 for c in cards)


def test_sav_comparison_evidence_columns(tmp_path):
    out = sav_comparison.main([*COMMON, "--stores", str(tmp_path / "stores"), "--out",
                               str(tmp_path / "sav"), "--k-grid", "1", "4", "--shots-grid", "3",
                               "--n-perm", "20"])
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv")
    for col in ("SN p vs zero-shot", "SN null ceiling", "SAV p vs zero-shot", "SN vs SAV p",
                "zero-shot"):
        assert col in summary.columns and summary[col].notna().all()


def test_robustness_and_overlap_compare_stable_sets(tmp_path):
    import pandas as pd

    from sn_interp.analyses import cross_model_overlap, robustness

    flags = ["--model", "tiny-llava", "--task", "shapes-color", "--n", "48", "--shots", "3",
             "--test-size", "12", "--k", "4", "--no-progress", "--prompts", "mc", "mc_terse",
             "--stability-boot", "3", "--stores", str(tmp_path / "stores")]
    rob = robustness.main([*flags, "--out", str(tmp_path / "rob"), "--shifts", "style"])
    own = pd.read_csv(rob / "prompt_stability.csv")
    assert set(own.prompt) == {"mc", "mc_terse"} and own.prompt_expected_jaccard.between(0, 1).all()
    assert "prompt_stable_jaccard" in pd.read_csv(rob / "prompt_overlap.csv").columns
    cmo = cross_model_overlap.main([*flags, "--out", str(tmp_path / "cmo"), "--seeds", "0", "1"])
    seeds = pd.read_csv(cmo / "seed_stability.csv")
    diag = seeds[seeds.seed_a == seeds.seed_b]
    assert len(diag) == 2 and diag.seed_expected_jaccard.between(0, 1).all()
