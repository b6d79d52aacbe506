"""`ropelab lab ...` on bad input: a one-line error, exit 2, existing results untouched."""

from __future__ import annotations

import pytest

from ropelab.cli import main
from ropelab.lab.model import DecoderLM, ModelConfig
from ropelab.lab.train import save_checkpoint

TINY = dict(num_layers=1, dim=16, num_heads=2, max_positions=16)


@pytest.fixture
def results(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "results.json").write_text('{"sentinel": true}')
    (out / "report.html").write_text("<p>old</p>")
    return out


def _untouched(out):
    assert (out / "results.json").read_text() == '{"sentinel": true}'
    assert (out / "report.html").read_text() == "<p>old</p>"
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.json"]


def _checkpoint(path, encoding):
    model = DecoderLM(ModelConfig(encoding=encoding, **TINY))
    save_checkpoint(
        path,
        {
            "format": "ropelab.lab.checkpoint/1",
            "model_config": model.cfg.to_dict(),
            "model": model.state_dict(),
            "train_config": {},
            "step": 1,
            "losses": [1.0],
        },
    )
    return str(path)


def _fails(argv, capsys, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and match in err, err


def test_unknown_encoding(results, capsys):
    _fails(
        ["lab", "run", "--quick", "--encodings", "rope,fancy", "--out", str(results)],
        capsys,
        "encoding='fancy' is unknown: expected one of sinusoidal, learned",
    )
    _untouched(results)


def test_non_positive_length(results, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lab", "run", "--quick", "--length", "0", "--out", str(results)])
    assert exit_info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
    _untouched(results)


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_missing_or_empty_text(results, tmp_path, capsys, kind):
    text = tmp_path / "text.txt"
    if kind == "empty":
        text.write_text("")
    _fails(["lab", "run", "--quick", "--text", str(text), "--out", str(results)], capsys, "--text")
    _untouched(results)


def test_checkpoint_from_another_encoding(results, tmp_path, capsys):
    path = _checkpoint(tmp_path / "alibi.pt", "alibi")
    _fails(
        ["lab", "eval", "--checkpoint", path, "--encoding", "rope", "--out", str(results)],
        capsys,
        "trained with encoding='alibi', not encoding='rope'",
    )
    _fails(["lab", "extend", "--checkpoint", path, "--out", str(results)], capsys, "not encoding='rope'")
    _fails(["lab", "train", "--encoding", "rope", "--resume", "--out", path], capsys, "not encoding='rope'")
    _untouched(results)


def test_corrupt_checkpoint(results, tmp_path, capsys):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"\x80\x02 this is not a checkpoint")
    _fails(
        ["lab", "eval", "--checkpoint", str(path), "--out", str(results)],
        capsys,
        "corrupt or not a ropelab lab checkpoint",
    )
    _untouched(results)
