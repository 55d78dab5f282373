"""The options of an evaluation, defined once for ``cpcbench eval``, ``cpcbench sweep`` and their Python APIs.

``EvalOverrides`` holds the fine-tuning settings an evaluation may change from its task's defaults (the same for
every cell of a sweep); ``EvalConfig`` adds what is evaluated (backbone, task, protocol, seeds, fraction, smoke
limit) and is stored in full in every result record. The fields of ``EvalOverrides`` carry their CLI flag and
help text; ``cli_options`` turns them into the typer options of both commands, so a setting is added, renamed or
documented in one place.

Light on purpose (no torch): the CLI imports it to build its options.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import CpcbenchError

PROTOCOL_NAMES = ("finetune", "linear", "attentive", "knn", "match")
FEATURE_CACHE = ("on", "off")


def _option(default: Any, flag: str, help: str, cli_type: Any = None) -> Any:  # noqa: A002  (typer's name)
    """A field with its CLI flag and help; ``cli_type``: the type the CLI parses (converted back with ``str``)."""
    return field(default=default, metadata={"flag": flag, "help": help, "cli_type": cli_type})


@dataclass(frozen=True)
class EvalOverrides:
    """Fine-tuning settings of an evaluation (None: the task's default; ``cpcbench eval``/``sweep`` options)."""

    steps: int | None = _option(None, "--steps", "Fine-tuning steps (default: the task's).")
    batch_size: int | None = _option(None, "--batch-size", "Batch size (default: the task's).")
    base_lr: float | None = _option(None, "--lr", "Base LR per 256 samples (default: the task's).")
    img_size: int | None = _option(None, "--img-size", "Input size (default: the backbone's).")
    layer_decay: float | None = _option(None, "--layer-decay", "Layer-wise LR decay of fine-tuning (default: the "
                                                               "task's; 1 = the same LR for every block).")
    data_root: str | None = _option(None, "--data-root", "Real benchmarks' data (default $CPCBENCH_DATA); or a "
                                                         "frame set.", cli_type=Path)
    device: str = _option("auto", "--device", "auto | cpu | cuda")
    num_workers: int = _option(0, "--workers", "DataLoader workers.")
    feature_cache: str = _option("on", "--feature-cache", "on: frozen-feature protocols read the backbone's "
                                                          "tokens from the feature cache | off: linear runs the "
                                                          "backbone at every step (the uncached path).")
    compile: bool = _option(False, "--compile", "Compile the transformer blocks before fine-tuning "
                                                "(torch.compile): faster steps for tens of seconds of compiling; "
                                                "pays on long schedules.")
    eval_batch_size: int = 64


@dataclass(frozen=True, kw_only=True)
class EvalConfig(EvalOverrides):
    """One evaluation (a backbone on a task under a protocol, with its settings); stored in full in the record."""

    backbone: str
    task: str
    protocol: str = "finetune"
    seeds: int = 1
    first_seed: int = 0
    fraction: float = 1.0
    limit: int | None = None

    @classmethod
    def of(cls, overrides: EvalOverrides, **what: Any) -> EvalConfig:
        """``overrides`` plus what is evaluated (``backbone=``, ``task=``, ``seeds=`` ...)."""
        return cls(**asdict(overrides), **what)

    def check(self) -> None:
        if self.protocol not in PROTOCOL_NAMES:
            raise CpcbenchError(f"unknown protocol {self.protocol!r}; use one of {', '.join(PROTOCOL_NAMES)}")
        if self.feature_cache not in FEATURE_CACHE:
            raise CpcbenchError(f"--feature-cache must be on or off, got {self.feature_cache!r}")
        if self.feature_cache == "off" and self.protocol in ("attentive", "knn", "match"):
            raise CpcbenchError(f"--protocol {self.protocol} runs on cached features only; --feature-cache off "
                                "applies to --protocol linear")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise CpcbenchError(f"--layer-decay must be in (0, 1], got {self.layer_decay}")
        if self.seeds < 1:
            raise CpcbenchError(f"--seeds must be >= 1, got {self.seeds}")
        if not 0.0 < self.fraction <= 1.0:
            raise CpcbenchError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.limit is not None and self.limit < 1:
            raise CpcbenchError(f"--limit must be >= 1, got {self.limit}")
        if self.steps is not None and self.steps < 1:
            raise CpcbenchError(f"--steps must be >= 1, got {self.steps}")


def cli_options(param: str = "overrides", exclude: Sequence[str] = ()) -> Callable[[Callable], Callable]:
    """Decorate a typer command: its parameter ``param`` is replaced, in place, by one option per flagged field of
    ``EvalOverrides`` (minus ``exclude``), and the command receives them as one ``EvalOverrides``."""

    def decorate(fn: Callable) -> Callable:
        import typer

        hints = typing.get_type_hints(EvalOverrides)
        own = [f for f in fields(EvalOverrides) if "flag" in f.metadata and f.name not in exclude]
        params: list[inspect.Parameter] = []
        for p in inspect.signature(fn).parameters.values():
            if p.name != param:
                params.append(p)
                continue
            for f in own:
                cli_type = f.metadata["cli_type"]
                typ = hints[f.name] if cli_type is None else (cli_type | None if f.default is None else cli_type)
                params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typ,
                                                default=typer.Option(f.default, f.metadata["flag"],
                                                                     help=f.metadata["help"])))
        if len(params) == len(inspect.signature(fn).parameters):
            raise TypeError(f"{fn.__name__} has no parameter {param!r} to replace with the evaluation options")

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            values = {}
            for f in own:
                v = kwargs.pop(f.name)
                values[f.name] = str(v) if f.metadata["cli_type"] is not None and v is not None else v
            return fn(**kwargs, **{param: EvalOverrides(**values)})

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {**{k: v for k, v in fn.__annotations__.items() if k != param},
                                   **{p.name: p.annotation for p in params if p.name in {f.name for f in own}}}
        return command

    return decorate
