"""Fixtures of the model_export tests: tiny checkpoints in the original training formats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from model_export import cli
from model_export.checkpoints import save_densenet_checkpoint, save_kobert_checkpoint
from model_export.densenet import DenseNet121, densenet_config
from model_export.kobert import KoBertClassifier, kobert_config
from model_export.tokenizer import convert_tokenizer, train_demo_spm

TINY_VOCAB = 300


@dataclass(frozen=True)
class Sources:
    """Checkpoint files as their owners hold them (random, seeded weights)."""

    directory: Path
    binary: Path
    multiclass: Path
    text: Path
    spm: Path
    vocab_size: int

    def args(self, **override: Path) -> list[str]:
        files = {
            "--audio-binary": self.binary,
            "--audio-multiclass": self.multiclass,
            "--text": self.text,
            "--spm": self.spm,
        }
        files.update({f"--{k.replace('_', '-')}": v for k, v in override.items()})
        out: list[str] = []
        for flag, path in files.items():
            out += [flag, str(path)]
        return [*out, "--size", "tiny"]


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    directory = tmp_path_factory.mktemp("tiny-sources")
    spm = train_demo_spm(directory, vocab_size=TINY_VOCAB, seed=0)
    vocab_size = convert_tokenizer(spm).vocab_size
    torch.manual_seed(1234)
    save_densenet_checkpoint(
        DenseNet121(densenet_config("tiny", num_classes=2)), directory / "binary.pt"
    )
    save_densenet_checkpoint(
        DenseNet121(densenet_config("tiny", num_classes=6)), directory / "multiclass.pt"
    )
    save_kobert_checkpoint(
        KoBertClassifier(kobert_config("tiny", vocab_size=vocab_size)), directory / "text.pt"
    )
    return Sources(
        directory=directory,
        binary=directory / "binary.pt",
        multiclass=directory / "multiclass.pt",
        text=directory / "text.pt",
        spm=spm,
        vocab_size=vocab_size,
    )


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `python -m model_export ARGS` in this process; argparse errors give their code."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def leftovers(parent: Path, name: str) -> list[str]:
    """Anything a build for `parent / name` left behind (the bundle or its temp dirs)."""
    return sorted(
        p.name for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}.")
    )
