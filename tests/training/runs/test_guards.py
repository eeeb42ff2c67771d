"""One resume and non-finite guarantee, tested once for both trainers (byte model and graft).

Each case runs the trainer's own command (``python -m training.train`` / ``python -m
training.graft``) on a few KB of repetitive text: a tiny byte model, and a tiny random Llama.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lens_positions.rotary_models import save_tiny_llama
from training.graft.command import main as graft_main
from training.runs import checkpointing, guards
from training.tokens.byte_tokens import prepare_tokens
from training.train.command import EXIT_NON_FINITE
from training.train.command import main as train_main

REPO = Path(__file__).resolve().parents[3]
WORDS = "the quick brown fox jumps over lazy dog when cat sat on mat 她 每天 喝 绿茶".split()


@dataclass
class Trainer:
    name: str
    module: str
    main: Callable[[list[str]], int]
    args: Callable[[Path], list[str]]  # the command's flags for a run in this folder
    steps: list[str]  # a short run that checkpoints often
    delay: str  # seconds per update while a test kills the process
    other: list[str]  # a setting that changes the weights
    model_file: str  # the finished model's weights, in the run folder
    card_file: str
    nonfinite_exit: int

    def weights(self, out: Path) -> dict[str, torch.Tensor]:
        return load_file(str(out / self.model_file))

    def card(self, out: Path) -> dict:
        return json.loads((out / self.card_file).read_text())


def _documents(folder: Path) -> Path:
    rng = random.Random(0)
    folder.mkdir()
    with (folder / "docs.jsonl").open("w") as f:
        for _ in range(80):
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(40))}, ensure_ascii=False) + "\n")
    return folder


@pytest.fixture(scope="module", params=["byte", "graft"])
def trainer(request, tmp_path_factory) -> Trainer:
    root = tmp_path_factory.mktemp(request.param)
    docs = _documents(root / "docs")
    if request.param == "byte":
        prepare_tokens(f"local:{docs / 'docs.jsonl'}", root / "tokens", val_docs=10, progress=False)
        return Trainer(
            "byte", "training.train", train_main,
            lambda out: ["--config", "tiny", "--data", str(root / "tokens"), "--out", str(out),
                         "--threads", "1", "--no-progress", "--no-tensorboard"],
            ["--steps", "30", "--checkpoint-every", "5", "--eval-every", "15", "--log-every", "5"],
            "0.05", ["--lr", "0.1"], "final/model.safetensors", "final/card.json", EXIT_NON_FINITE)
    model = save_tiny_llama(root / "tiny")
    return Trainer(
        "graft", "training.graft", graft_main,
        lambda out: ["--base", str(model), "--data", str(docs), "--out", str(out), "--n-ctx", "32",
                     "--batch-size", "2", "--eval-windows", "8", "--log-every", "2",
                     "--delta-lr", "3e-2", "--lr", "3e-3", "--warmup-steps", "2"],
        ["--steps", "14", "--checkpoint-every", "3"],
        "0.3", ["--delta-lr", "0.1"], "adapter/adapter.safetensors", "adapter/card.json", 2)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_run_killed_between_checkpoints_resumes_to_identical_weights(trainer: Trainer, tmp_path: Path):
    reference = tmp_path / "reference"
    assert trainer.main([*trainer.args(reference), *trainer.steps]) == 0
    killed = tmp_path / "killed"
    argv = [*trainer.args(killed), *trainer.steps]
    proc = subprocess.Popen([sys.executable, "-m", trainer.module, *argv, "--debug-step-delay", trainer.delay],
                            cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (killed / checkpointing.CHECKPOINT_NAME).exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        time.sleep(1.3 * float(trainer.delay))  # one more update that no checkpoint holds
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped = checkpointing.load_checkpoint(killed / checkpointing.CHECKPOINT_NAME)["step"]
    total = int(trainer.steps[1])
    assert 0 < stopped < total and not (killed / trainer.card_file).exists()

    # Without --resume the folder is refused, and left as it was.
    assert trainer.main(argv) == 2
    assert checkpointing.load_checkpoint(killed / checkpointing.CHECKPOINT_NAME)["step"] == stopped
    assert trainer.main([*argv, "--resume"]) == 0
    a, b = trainer.weights(reference), trainer.weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    card = trainer.card(killed)
    assert [inv["event"] for inv in card["invocations"]] == ["start", "resume"]
    assert card["invocations"][1]["step"] == stopped and "--resume" in card["invocations"][1]["command"]
    assert f"resume at step {stopped}" in (killed / trainer.card_file).with_suffix(".md").read_text()


def test_a_finished_run_continues_only_with_resume_and_its_own_settings(trainer: Trainer, tmp_path: Path, capsys):
    out = tmp_path / "run"
    short = ["--steps", "4", "--checkpoint-every", "2"]
    assert trainer.main([*trainer.args(out), *short]) == 0
    before = (out / trainer.model_file).read_bytes()
    assert trainer.main([*trainer.args(out), *short]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert trainer.main([*trainer.args(out), *short, *trainer.other, "--resume"]) == 2
    assert f"{trainer.other[0][2:].replace('-', '_')}: checkpoint" in capsys.readouterr().err
    # Runtime settings may change; a finished run is reported, not retrained.
    assert trainer.main([*trainer.args(out), *short, "--log-every", "1", "--resume"]) == 0
    assert (out / trainer.model_file).read_bytes() == before


def test_a_nonfinite_loss_stops_before_its_update_and_keeps_the_last_good_checkpoint(
        trainer: Trainer, tmp_path: Path, capsys):
    out = tmp_path / "nan"
    argv = [*trainer.args(out), "--steps", "12", "--checkpoint-every", "3", "--debug-nan-at-step", "8"]
    assert trainer.main(argv) == trainer.nonfinite_exit
    err = capsys.readouterr().err
    assert "non-finite loss at step 8" in err and "last good checkpoint (step 6)" in err
    ckpt = checkpointing.load_checkpoint(out / checkpointing.CHECKPOINT_NAME)
    assert ckpt["step"] == 6
    weights = ckpt["model"] if "model" in ckpt else ckpt["params"]
    assert all(torch.isfinite(p).all() for p in weights.values())
    assert not (out / trainer.card_file).exists()
    assert checkpointing.stale_temp_files(out) == []


def test_folders_and_settings_are_checked_before_any_work(tmp_path: Path):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    with pytest.raises(guards.ResumeError, match="choose another --out"):
        guards.open_run_folder(a_file, resume=False, finished=a_file / "card.json", kind="train")
    assert a_file.read_text() == "keep me"
    run = tmp_path / "run"
    checkpointing.save_checkpoint(run / checkpointing.CHECKPOINT_NAME, {"kind": "graft", "step": 1})
    with pytest.raises(guards.ResumeError, match="'graft' run, not of a 'train' run"):
        guards.open_run_folder(run, resume=True, finished=run / "card.json", kind="train")
    assert guards.open_run_folder(run, resume=True, finished=run / "card.json", kind="graft")["step"] == 1
    said: list[str] = []
    assert guards.open_run_folder(tmp_path / "new", resume=True, finished=tmp_path / "x",
                                  kind="train", say=said.append) is None
    assert said == [f"no checkpoint in {tmp_path / 'new'}: starting from step 0"]
    assert guards.differences({"lr": 1, "out": "a", "seed": 0}, {"lr": 2, "out": "b", "seed": 0}, {"out"}) == [
        "lr: checkpoint 1 vs requested 2"]
    with pytest.raises(guards.ResumeError, match=r"only out may change\): lr"):
        guards.refuse_differences(run, ["lr: checkpoint 1 vs requested 2"], {"out"})
    guards.check_finite(3, 1.0, 2.0, "")
    with pytest.raises(guards.NonFiniteLossError, match="step 3"):
        guards.check_finite(3, float("inf"), 2.0, "")
