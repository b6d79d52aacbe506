"""``ropelab extend`` on the embedded SmolLM2-135M (T = 8192) to N = 2T, saved under benchmarks/results/real/.

Usage: python benchmarks/real_extend.py [--check-handover] [any ropelab extend option, e.g. --finetune pose]

Runs the command (its defaults: as-is, PI and YaRN zero-shot; one stdlib document of N tokens; the
passkey grid T/2..2T x 5 depths x 5 keys) into ``.cache/real_extend`` (ignored by git; a rerun resumes
a fine-tune from its checkpoints there), then keeps only the small files (results.json, results.csv,
report.html with its figures embedded) in benchmarks/results/real/.

With ``--write-config DIR --check-handover``, the handed-over folder is then loaded by plain
``transformers.AutoModelForCausalLM.from_pretrained(DIR)`` and its logits on 1024 stdlib tokens are
compared with ropelab's evaluation of the same weights under the chosen RoPE (held to <= 1e-4);
the result is printed and kept as ``handover_check.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ropelab.cli import main

KEEP = ("results.json", "results.csv", "report.html")
TARGET = Path(__file__).resolve().parent / "results" / "real"


def check_handover(folder: Path, results: dict) -> dict:
    """Max |logit difference| between plain transformers on ``folder`` and ropelab's evaluation."""
    import torch
    from transformers import AutoModelForCausalLM

    from ropelab.real.evaluate import corpus_documents, use_rope
    from ropelab.real.load import load_model

    torch.set_num_threads(2)
    plain = AutoModelForCausalLM.from_pretrained(folder, dtype="float32").eval()
    ours = load_model(str(folder))  # the same weights, RoPE imposed by ropelab
    use_rope(ours.model, ours.rope.as_is)  # the folder ships the method's RoPE: as-is is that method
    ids = corpus_documents(ours.tokenizer, 1024, 1)[0][0][None, :-1]
    with torch.inference_mode():
        difference = (plain(ids).logits - ours.model(ids).logits).abs().max().item()
    return {
        "method": results["handover"]["method"],
        "tokens": ids.shape[1],
        "max_abs_logit_difference": difference,
        "within_1e-4": difference <= 1e-4,
    }


def run(argv: list[str]) -> int:
    check = "--check-handover" in argv
    argv = [a for a in argv if a != "--check-handover"]
    scratch = Path(__file__).resolve().parent.parent / ".cache" / "real_extend"
    code = main(["extend", "--out", str(scratch), *argv])
    if code != 0:
        return code
    TARGET.mkdir(parents=True, exist_ok=True)
    folder = argv[argv.index("--write-config") + 1] if "--write-config" in argv else None
    for name in KEEP:  # a committed result names no folder of this machine: the hand-over folder becomes DIR
        text = (scratch / name).read_text()
        (TARGET / name).write_text(text.replace(folder, "DIR") if folder else text)
    print(f"saved {', '.join(KEEP)} in {TARGET}")
    results = json.loads((scratch / "results.json").read_text())
    if check and results.get("handover"):
        folder = Path(argv[argv.index("--write-config") + 1])
        outcome = check_handover(folder, results)
        (TARGET / "handover_check.json").write_text(json.dumps(outcome, indent=1))
        print(f"hand-over check: {outcome}")
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
