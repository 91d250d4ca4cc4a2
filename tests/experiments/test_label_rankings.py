"""The label-ranking experiment's bookkeeping: tables, the default's choice, the criterion."""

import numpy as np

from experiments.label_rankings import RANKINGS, choose_default, criterion, table


def fake_run(task: str, seed: int, *, best: str) -> dict:
    """A run of 100 points whose first 20 are flipped; ``best`` ranks them first."""
    flipped = np.zeros(100, dtype=bool)
    flipped[:20] = True
    scores = {
        name: np.random.default_rng([seed, position]).random(100).tolist()
        for position, name in enumerate(RANKINGS)
    }
    scores[best] = np.where(flipped, 2.0, 0.0).tolist()
    cleanlab = np.where(flipped, 1.0, 0.0)
    cleanlab[20:25] = 1.5  # five clean points ranked before the flips
    scores["cleanlab"] = cleanlab.tolist()
    return {"task": task, "seed": seed, "flipped": flipped.tolist(), "scores": scores}


def test_the_default_is_the_best_measured_label_ranking_and_the_criterion_sees_it():
    runs = [fake_run(task, seed, best="fusion") for task in ("german", "digits") for seed in (0, 1)]
    rows = table(runs, (0, 1))
    assert rows["german"]["fusion"][1] == 1.0  # all flips within the first 20%
    assert choose_default(rows) == "fusion"
    verdict = criterion(rows, "fusion")
    assert verdict["at_least_as_good_everywhere"] is True
    assert {"german 10%", "german 20%", "digits 10%"} <= set(verdict["strictly_better_at"])
    assert criterion(rows, "confidence_oof")["at_least_as_good_everywhere"] is False


def test_a_run_without_selection_seeds_reports_the_engines_default_and_the_seeds_used(
    tmp_path, monkeypatch
):
    import json

    from experiments import label_rankings

    runs = [
        {**fake_run(task, seed, best="adaptive"), "seconds": 1.0, "adaptive_view": "in_sample"}
        for task in ("german", "digits")
        for seed in (3, 4)
    ]
    output = tmp_path / "runs.json"
    output.write_text(json.dumps({"runs": runs}))
    for name in ("SUMMARY", "FULL_SUMMARY"):
        monkeypatch.setattr(label_rankings, name, tmp_path / f"{name}.json")
    for name in ("RESULTS_MD", "RESULTS_FULL_MD"):
        monkeypatch.setattr(label_rankings, name, tmp_path / f"{name}.md")
    label_rankings.main(
        [
            "--mode",
            "full",
            "--tasks",
            "german",
            "digits",
            "--seeds",
            "3",
            "4",
            "--output",
            str(output),
        ]
    )
    summary = json.loads((tmp_path / "FULL_SUMMARY.json").read_text())
    assert summary["default"] == "adaptive" and summary["chosen_on_selection_seeds"] is None
    assert summary["selection"] == {} and summary["calibration_source"] == "engine"
    assert summary["seeds_used"]["report"] == {"german": [3, 4], "digits": [3, 4]}
    assert summary["criterion_on_report_seeds"]["at_least_as_good_everywhere"] is True
    text = (tmp_path / "RESULTS_FULL_MD.md").read_text()
    assert "Seeds per task: german [3, 4]; digits [3, 4]." in text
    assert "this run has no selection seeds" in text


def test_a_refresh_saves_the_recomputed_rankings_and_keeps_the_training_seconds(
    tmp_path, monkeypatch
):
    import json

    from experiments import label_rankings

    old = {**fake_run("german", 3, best="confidence"), "seconds": 42.0, "adaptive_view": "blend"}
    output = tmp_path / "runs.json"
    output.write_text(json.dumps({"runs": [old]}))
    new = {**fake_run("german", 3, best="adaptive"), "seconds": 1.0, "adaptive_view": "in_sample"}
    monkeypatch.setattr(label_rankings, "rank_task_seed", lambda *args, **kwargs: dict(new))
    monkeypatch.setattr(label_rankings, "FULL_SUMMARY", tmp_path / "summary.json")
    monkeypatch.setattr(label_rankings, "RESULTS_FULL_MD", tmp_path / "results.md")
    argv = ["--mode", "full", "--tasks", "german", "--seeds", "3", "--output", str(output)]
    label_rankings.main([*argv, "--refresh-label-rankings"])
    (saved,) = json.loads(output.read_text())["runs"]
    assert saved["adaptive_view"] == "in_sample" and saved["scores"] == new["scores"]
    assert saved["seconds"] == 42.0 and saved["refresh_seconds"] == 1.0
    label_rankings.main(argv)  # a later run resumes from the recomputed rankings
    assert json.loads((tmp_path / "summary.json").read_text())["adaptive_views"] == {
        "german 3": "in_sample"
    }
