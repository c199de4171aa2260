"""ci/bench_auxk.py: one row per AuxK width, each decoding min(k_aux, dead) latents, and a bad
--dead is one line."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ci"))
import bench_auxk  # noqa: E402


def test_rows_name_the_latents_auxk_decodes(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--sources", "2", "--width", "8", "--latents", "32", "--k", "2", "--rows", "16",
            "--dead", "10", "--k-aux", "none,4", "--rounds", "1"]
    assert bench_auxk.main(argv) == 0
    rows = [r.split("|")[1:-1] for r in capsys.readouterr().out.splitlines()
            if r.startswith("| ") and "k_aux" not in r]
    assert [(c[0].strip(), int(c[1])) for c in rows] == [("default (8)", 8), ("4", 4)]
    assert float(rows[0][3]) == 1.0 and float(rows[1][3]) > 0


def test_bad_dead_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_auxk.main(["--latents", "8", "--dead", "9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --dead 9") and len(err.splitlines()) == 1
