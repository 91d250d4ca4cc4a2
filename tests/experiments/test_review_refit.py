"""The review-then-refit summary and its RESULTS.md section (no server: fake runs)."""

from __future__ import annotations

import pytest

from experiments.review_refit import FRACTIONS, RANKINGS, section_markdown, summarise, write_section


def fake_run(task: str, seed: int, offset: float) -> dict:
    return {
        "task": task,
        "seed": seed,
        "fractions": list(FRACTIONS),
        "source_accuracy": 0.7,
        "clean_refit_accuracy": 0.8,
        "curves": {
            name: [0.6 + offset + 0.01 * i for i in range(len(FRACTIONS))] for name in RANKINGS
        },
        "method_named": {name: name for name in RANKINGS} | {"default": "adaptive"},
    }


def test_summary_is_the_mean_over_seeds_and_the_section_replaces_itself(tmp_path):
    runs = [fake_run("german", 3, 0.0), fake_run("german", 4, 0.1)]
    summary = summarise(runs)
    assert summary["german"]["confidence"][0] == pytest.approx(0.65)
    assert summary["german"]["refit on the true labels"] == [0.8]
    payload = {"runs": runs, "summary": summary, "load_average": [1.0, 1.0, 1.0]}
    assert any("german 3: `adaptive`" in line for line in section_markdown(payload))
    path = tmp_path / "RESULTS.md"
    path.write_text("# report\n")
    write_section(payload, path)
    write_section(payload, path)
    text = path.read_text()
    assert text.startswith("# report") and text.count("<!-- review-refit -->") == 1
