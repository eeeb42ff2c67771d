"""Saving and loading models: a folder with ``config.json``, ``model.safetensors`` and a card.

Shipped models live in ``lens_positions/pretrained/<name>/`` and load by name. Every failure names
the file and the problem (missing, unreadable, corrupt, not matching the config), and saving never
leaves a half-written folder behind: files are written into a temporary sibling folder that
replaces the target in one rename.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lens_positions.config import IncrementConfig
from lens_positions.increments import check_delta_table
from lens_positions.runs import CARD_MD

if TYPE_CHECKING:
    from lens_positions.model import HookedIncrementTransformer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = CARD_MD
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, corrupt, or does not match its config."""


def list_models() -> dict[str, Path]:
    """Shipped models by name -> folder."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(PRETRAINED_DIR.iterdir())
        if p.is_dir() and (p / CONFIG_FILE).is_file()
    }


def resolve(name_or_dir: str | Path) -> Path:
    """Folder of a shipped model name, a model folder, or a training run folder (its ``final/``)."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        # A training run folder (``training.train --out``) keeps its finished model in final/.
        if not (path / CONFIG_FILE).is_file() and (path / "final" / CONFIG_FILE).is_file():
            return path / "final"
        return path
    shipped = list_models()
    if str(name_or_dir) in shipped:
        return shipped[str(name_or_dir)]
    if path.exists():
        raise CheckpointError(f"{path}: not a checkpoint folder (expected a folder with {CONFIG_FILE})")
    names = ", ".join(shipped) or "none shipped yet"
    raise CheckpointError(f"{name_or_dir!r} is neither a checkpoint folder nor a shipped model ({names})")


def save_pretrained(
    model: HookedIncrementTransformer,
    directory: str | Path,
    card: str | None = None,
    dtype: torch.dtype | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write the model into ``directory`` atomically (it is replaced whole if it exists).

    dtype: store weights in this dtype (e.g. torch.bfloat16 to halve a shipped file); they are
        loaded back as float32.
    extra_files: more text files to put in the folder (name -> content), e.g. ``card.json``.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a saved model is an ordinary folder
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "lens_positions"})
        config = model.cfg.to_dict()
        config["device"] = "cpu"  # a property of the process that loads it, not of the model
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if card is not None:
            (tmp / CARD_FILE).write_text(card)
        for name, content in (extra_files or {}).items():
            (tmp / name).write_text(content)
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing target is kept until the new one is in place."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_config(directory: Path) -> IncrementConfig:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing config file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    try:
        return IncrementConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid config ({e})") from e


def load_pretrained(
    name_or_dir: str | Path, device: str | None = None, *, model_class: type[HookedIncrementTransformer]
) -> HookedIncrementTransformer:
    """Build the model of a checkpoint folder (or shipped name) and load its weights, in eval mode.

    model_class: the class to build (`HookedIncrementTransformer.from_pretrained` passes itself, so
    that this module never imports the model's). Config files written before a field existed load
    with its default (the model they describe).
    """
    directory = resolve(name_or_dir)
    cfg = load_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: corrupt or unreadable safetensors file ({e})") from e
    cfg.device = "cpu"  # where the weights are now (a config saved on a GPU says cuda)
    model = model_class(cfg)
    load_state(model, state, str(weights))
    if model.delta_table is not None:
        try:
            check_delta_table(model.delta_table.deltas, cfg)
        except ValueError as e:
            raise CheckpointError(f"{weights}: {e}") from e
    if device is not None:
        model.to(device)
    return model.eval()


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``, naming every missing, unexpected or misshapen tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {'; '.join(shapes)}")
    if problems:
        raise CheckpointError(f"{source}: weights do not match the config ({' | '.join(problems)})")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{source}: non-finite values in {', '.join(bad)}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
