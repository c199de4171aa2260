"""Model checkpoints kept next to a result: one ``state_dict`` per trained experience.

    $ clbench run --stream split-digits --strategy naive --seeds 0 --keep-checkpoints
    >>> from clbench.checkpoints import checkpoint_files, load_state
    >>> data = load_result("results/split-digits/mlp/naive/seed0.json")
    >>> files = checkpoint_files("results/split-digits/mlp/naive/seed0.json", data)
    >>> state = load_state(files[0][1])           # state_dict after experience 0

With ``keep_checkpoints`` the runner copies the model's ``state_dict`` after every training
experience (:class:`CheckpointSet`); :func:`save_checkpoints` writes them (``torch.save`` to a
temp file, then rename) into ``<result dir>/seed<k>.ckpt/exp<j>.pt`` before the result JSON is
written, and the JSON gets a ``checkpoints`` block::

    "checkpoints": {"dir": "seed0.ckpt",
                    "files": [{"after_experience": 0, "path": "seed0.ckpt/exp0.pt"}, ...],
                    "hook_layers": ["fc1", "fc2"]}            # + "partial": "trained part"

Paths are relative to the result file's folder, so a results tree can be moved as a whole.
Loading uses ``torch.load(weights_only=True)``: a checkpoint holds tensors only.

**Partial checkpoints.** A set made with ``names`` keeps only those ``state_dict`` entries and
says what they are in ``partial``: the text runner (:mod:`clbench.run.text`) keeps the trained
part of a language model only (``model.trainable_parameter_names()``; the frozen prefix never
changes, and a whole 135M-parameter state per experience would be 540 MB), and its block says
``"partial": "trained part"``. A partial checkpoint is loaded onto a model built as the run
built it, strictly on those names (:mod:`clbench.analyze.loading`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from clbench.atomic import write_atomic
from clbench.errors import ClbenchError


@dataclass
class CheckpointSet:
    """State dicts (CPU copies) taken after training experiences, and the model's hook layers.

    ``names``: keep only these ``state_dict`` entries (None: all); ``partial`` then says what
    they are (e.g. ``"trained part"``) and goes into the result's block."""

    hook_layers: list[str]
    states: list[tuple[int, dict[str, Tensor]]] = field(default_factory=list)
    names: Sequence[str] | None = None
    partial: str | None = None

    def __post_init__(self) -> None:
        if (self.names is None) != (self.partial is None):
            raise ValueError("a partial checkpoint set needs both names and partial")

    def add(self, after_experience: int, model: nn.Module) -> None:
        """Copy ``model``'s current ``state_dict`` (its ``names`` entries only, if set) to the
        CPU and keep it; a name the model lacks is a ValueError."""
        full = model.state_dict()
        keep = list(full) if self.names is None else list(self.names)
        missing = [k for k in keep if k not in full]
        if missing:
            raise ValueError(f"checkpoint names not in the model's state_dict: {missing[:3]}")
        state = {k: full[k].detach().to("cpu", copy=True) for k in keep}
        self.states.append((int(after_experience), state))


def checkpoint_dir(result_json: str | Path) -> Path:
    """``<dir>/seed<k>.json`` -> ``<dir>/seed<k>.ckpt``."""
    p = Path(result_json)
    return p.with_name(p.stem + ".ckpt")


def save_state_atomic(state: dict[str, Tensor], path: str | Path) -> Path:
    """``torch.save`` ``state`` to ``path`` atomically (:func:`clbench.atomic.write_atomic`)."""
    return write_atomic(path, lambda f: torch.save(state, f))


def save_checkpoints(result_json: str | Path, ckpts: CheckpointSet) -> dict[str, Any]:
    """Write every state of ``ckpts`` next to ``result_json``; returns the JSON block."""
    folder = checkpoint_dir(result_json)
    files = []
    for after, state in ckpts.states:
        path = save_state_atomic(state, folder / f"exp{after}.pt")
        files.append({"after_experience": after, "path": f"{folder.name}/{path.name}"})
    block: dict[str, Any] = {"dir": folder.name, "files": files,
                             "hook_layers": list(ckpts.hook_layers)}
    if ckpts.partial is not None:
        block["partial"] = ckpts.partial
    return block


def validate_block(block: Any) -> str | None:
    """Why ``block`` is not a valid ``checkpoints`` block, or None if it is."""
    if not isinstance(block, dict):
        return "'checkpoints' should be an object"
    files, layers = block.get("files"), block.get("hook_layers")
    if not isinstance(files, list) or not isinstance(layers, list):
        return "'checkpoints' needs lists 'files' and 'hook_layers'"
    for f in files:
        if (not isinstance(f, dict) or not isinstance(f.get("after_experience"), int)
                or not isinstance(f.get("path"), str)):
            return "each checkpoint file needs an int 'after_experience' and a str 'path'"
    if "partial" in block and not isinstance(block["partial"], str):
        return "'checkpoints.partial' should be a string (what part of the model is kept)"
    return None


def checkpoint_files(result_json: str | Path, data: dict[str, Any]) -> list[tuple[int, Path]]:
    """``(after_experience, absolute path)`` of each checkpoint of a loaded result, in order.

    A result without checkpoints, or with a file missing, is a :class:`ClbenchError`.
    """
    block = data.get("checkpoints")
    if not block or not block.get("files"):
        raise ClbenchError(f"{result_json} has no checkpoints; re-run the cell with "
                           "'clbench run ... --keep-checkpoints --no-resume'")
    base = Path(result_json).parent
    out = [(int(f["after_experience"]), base / f["path"]) for f in block["files"]]
    missing = [str(p) for _, p in out if not p.is_file()]
    if missing:
        raise ClbenchError(f"{result_json}: checkpoint file {missing[0]} is missing; re-run the "
                           "cell with --keep-checkpoints --no-resume")
    return sorted(out)


def load_state(path: str | Path) -> dict[str, Tensor]:
    """A state dict saved by :func:`save_checkpoints` (tensors only, on the CPU)."""
    fix = "re-run the cell with --keep-checkpoints --no-resume"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, and how to recover
        raise ClbenchError(f"{path}: not a readable checkpoint ({type(e).__name__}); {fix}") from None
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, Tensor)
                                            for k, v in state.items())):
        raise ClbenchError(f"{path}: holds a {type(state).__name__}, not a state dict of "
                           f"tensors; {fix}")
    return state
