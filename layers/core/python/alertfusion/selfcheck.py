"""The self-check: do the bundle's models, int8 ones above all, still give fp32's answers on the
CPU that serves them?

int8 kernels differ by instruction set, so a bundle checked on the build machine can answer
differently on another CPU. The bundle carries a golden set (alertfusion.manifest.GoldenSet):
inputs for each model and the outputs fp32 gives them. The self-check runs each model on them
here (text one input at a time, as the engine does) and judges the answers by margins
(alertfusion.agreement) with the model's tolerance, the largest int8 error its build measured:

* every decisive answer agrees with fp32, and
* no error is larger than ``ERROR_HEADROOM`` times that tolerance: the margin rule assumes the
  errors it was measured with, and another CPU's rounding moves them a little, a kernel that
  saturates or misbehaves moves them far.

A model that is not quantized is held to the export's parity tolerance instead.
"""

from __future__ import annotations

import io
import platform
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol

from alertfusion.agreement import Agreement, judge_logits
from alertfusion.errors import BundleError, ReasonCode

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.bundle import Bundle

#: how much larger than the build's measured int8 error an error may be on this CPU
ERROR_HEADROOM = 2.0
#: fp32 models: the export's parity tolerance per logit (model_export.onnx_export); two logits
#: within it each move apart by at most twice that
FP32_SPREAD_TOLERANCE = 2e-4
#: the CPU features ONNX Runtime's int8 (and fp32) kernels choose by
_X86_FEATURES = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
_ARM_FEATURES = ("asimd", "asimddp", "i8mm", "sve", "sve2", "bf16")

Runner = Callable[[str, dict[str, "np.ndarray"]], "np.ndarray"]
#: a Whisper model's next-token logits at every position of some token ids, teacher forced
#: (name, log-mel features, ids) -> (len(ids), vocabulary): alertfusion.stt_whisper.step_logits
StepRunner = Callable[[str, "np.ndarray", list[int]], "np.ndarray"]


@dataclass(frozen=True)
class CpuInfo:
    """What the serving CPU is, as far as ONNX Runtime's kernels care."""

    machine: str
    model: str
    features: tuple[str, ...]
    #: vendor, family and model numbers (one "AMD EPYC" model name covers several generations)
    ident: str = ""

    def describe(self) -> str:
        flags = " ".join(self.features) or "none of the int8-relevant features"
        ident = f"{self.ident}; " if self.ident else ""
        return f"{self.model} ({ident}{self.machine}; {flags})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "model": self.model,
            "ident": self.ident,
            "features": list(self.features),
        }


def cpu_info(cpuinfo: str | None = None) -> CpuInfo:
    """This machine's CPU from /proc/cpuinfo (`cpuinfo`: its text, for tests)."""
    machine = platform.machine() or "unknown"
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    model = fields.get("model name") or fields.get("CPU part") or platform.processor() or "unknown"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    wanted = _ARM_FEATURES if "Features" in fields and "flags" not in fields else _X86_FEATURES
    ident = " ".join(
        f"{label} {fields[key]}"
        for key, label in (
            ("vendor_id", ""),
            ("cpu family", "family"),
            ("model", "model"),
            ("CPU implementer", "implementer"),
            ("CPU part", "part"),
        )
        if fields.get(key)
    ).strip()
    return CpuInfo(machine, model, tuple(f for f in wanted if f in flags), ident)


@dataclass(frozen=True)
class ModelCheck:
    """One model on the golden set."""

    name: str
    quantization: str
    #: the build's largest logit error spread (int8), or the parity tolerance's (fp32)
    tolerance: float
    judged: Agreement
    max_probability_shift: float
    #: the largest difference from the build CPU's own int8 outputs (int8 models)
    max_build_difference: float | None

    @property
    def limit(self) -> float:
        """The largest error this CPU may show."""
        return ERROR_HEADROOM * self.tolerance

    @property
    def passed(self) -> bool:
        return not self.judged.disagreements and self.judged.max_error <= self.limit

    def problems(self) -> list[str]:
        out = [f"disagrees: {d.describe()}" for d in self.judged.disagreements]
        if self.judged.max_error > self.limit:
            out.append(
                f"largest logit error spread {self.judged.max_error:.4g} is over the limit "
                f"{self.limit:.4g} ({ERROR_HEADROOM:g} x the build's {self.tolerance:.4g})"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        rate = self.judged.rate
        return {
            "model": self.name,
            "quantization": self.quantization,
            "passed": self.passed,
            "inputs": len(self.judged.decisions),
            "decisive": len(self.judged.decisive),
            "agreement": rate,
            "near_ties": [
                {"input": d.what, "margin": d.margin, "bound": d.bound}
                for d in self.judged.near_ties
            ],
            "disagreements": [
                {"input": d.what, "fp32": d.fp32, "here": d.int8, "margin": d.margin}
                for d in self.judged.disagreements
            ],
            "max_logit_spread": self.judged.max_error,
            "max_probability_shift": self.max_probability_shift,
            "tolerance": self.tolerance,
            "limit": self.limit,
            "max_build_difference": self.max_build_difference,
        }


@dataclass(frozen=True)
class SelfCheck:
    """The golden set on this CPU."""

    bundle_version: str
    cpu: CpuInfo
    models: tuple[ModelCheck, ...]
    ms: float

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.models)

    @property
    def failing(self) -> list[str]:
        return [m.name for m in self.models if not m.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle_version": self.bundle_version,
            "passed": self.passed,
            "cpu": self.cpu.to_dict(),
            "ms": round(self.ms, 1),
            "models": [m.to_dict() for m in self.models],
        }

    def lines(self) -> list[str]:
        """A human-readable report."""
        out = [
            f"self-check of bundle {self.bundle_version} on {self.cpu.describe()}: "
            f"{'PASSED' if self.passed else 'FAILED'} in {self.ms:.0f} ms"
        ]
        for m in self.models:
            rate = m.judged.rate
            agreement = "no decisive input" if rate is None else f"{rate:.0%} agree"
            out.append(
                f"  {m.name:<17} {m.quantization:<16} {'ok  ' if m.passed else 'FAIL'} "
                f"{len(m.judged.decisive)}/{len(m.judged.decisions)} decisive ({agreement}), "
                f"{len(m.judged.near_ties)} near ties; largest logit error spread "
                f"{m.judged.max_error:.4g} (limit {m.limit:.4g}), largest probability shift "
                f"{m.max_probability_shift:.4g}"
            )
            out.extend(f"      {problem}" for problem in m.problems())
        return out


def load_golden(bundle: Bundle) -> dict[str, np.ndarray]:
    """The bundle's golden arrays; BUNDLE_INVALID (naming the file) when the manifest lists
    none or the file cannot be read (its sha256 was checked when the bundle loaded)."""
    import numpy as np

    golden = bundle.golden
    if golden is None:
        raise BundleError(
            f"bundle {bundle.bundle_version} has no golden set (built before the "
            "self-check): rebuild it with model_export",
            code=ReasonCode.BUNDLE_INVALID,
        )
    path = bundle.path(golden.file)
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise BundleError(
            f"{golden.file}: not a readable golden set ({exc})", code=ReasonCode.BUNDLE_INVALID
        ) from exc
    for name, rows in golden.inputs.items():
        entry = bundle.entries.get(name)
        keys = [f"{name}/fp32", *(f"{name}/{i}" for i in getattr(entry, "input_names", ()))]
        if entry is None or any(k not in arrays or len(arrays[k]) != rows for k in keys):
            raise BundleError(
                f"{golden.file}: the golden set of {name} does not match the manifest",
                code=ReasonCode.BUNDLE_INVALID,
            )
    return arrays


def run_selfcheck(
    bundle: Bundle,
    run: Runner,
    *,
    names: list[str] | None = None,
    fallback: frozenset[str] = frozenset(),
    submit: Callable[[Callable[[], np.ndarray]], Future[np.ndarray]] | None = None,
    steps: StepRunner | None = None,
) -> SelfCheck:
    """Run the golden set through `run(model name, feeds) -> first output` (the engine's
    sessions) for every model of the golden set, or only `names`; `fallback` names the
    models `run` serves with their fp32 fallback (held to fp32's tolerance). With `submit`
    (the engine's worker), the models fed one input at a time run there, beside the others
    on this thread, as a request's text model does. A Whisper model's golden row (features,
    `input_ids`) runs through `steps` (BUNDLE_INVALID without it)."""
    import numpy as np

    from alertfusion.fusion import softmax

    started = time.perf_counter()
    golden = load_golden(bundle)
    assert bundle.golden is not None  # load_golden checked
    entries = bundle.entries
    chosen = names or list(bundle.golden.inputs)

    def outputs(name: str) -> np.ndarray:
        if getattr(entries[name], "decoder", None) is not None:  # a Whisper model
            return _whisper_outputs(golden, name, entries[name].input_names, steps)
        feeds = _rows(golden, name, entries[name].input_names)
        return np.concatenate([run(name, f) for f in feeds]).astype(np.float64)

    pending = {
        name: submit(partial(outputs, name))
        for name in chosen
        if submit is not None and "attention_mask" in entries[name].input_names
    }
    computed = {name: outputs(name) for name in chosen if name not in pending}
    computed.update({name: future.result() for name, future in pending.items()})
    checks = []
    for name in chosen:
        entry = entries[name]
        fp32 = golden[f"{name}/fp32"]
        here = computed[name]
        if fp32.ndim > 2:
            # a speech-to-text model's per-frame logits: each frame's top symbol is a decision
            fp32, here = (x.reshape(-1, x.shape[-1]) for x in (fp32, here))
        quantization = "none" if name in fallback else entry.quantization
        tolerance = _tolerance(entry, quantization)
        build = golden.get(f"{name}/build")
        if bundle.output_kind(name) == "sigmoid":
            # one probability p: the decision reads [1 - p, p] (as the build's report did)
            fp32, here = (np.concatenate([1.0 - x, x], axis=1) for x in (fp32, here))
            build = None if build is None else np.concatenate([1.0 - build, build], axis=1)
        checks.append(
            ModelCheck(
                name=name,
                quantization=quantization,
                tolerance=tolerance,
                judged=judge_logits(fp32, here, tolerance=tolerance, labels=entry.labels or None),
                max_probability_shift=float(np.abs(softmax(here) - softmax(fp32)).max())
                if np.isfinite(here).all()
                else 1.0,
                max_build_difference=float(np.abs(here - build).max())
                if build is not None and quantization != "none"
                else None,
            )
        )
    return SelfCheck(
        bundle.bundle_version, cpu_info(), tuple(checks), (time.perf_counter() - started) * 1e3
    )


def _tolerance(entry: Any, quantization: str) -> float:
    report = entry.quantization_report
    if quantization == "none":
        return FP32_SPREAD_TOLERANCE
    if report is None or report.max_logit_spread is None:
        raise BundleError(
            f"{entry.file} is {entry.quantization} with no measured int8 error (built before "
            "the margin rule): rebuild the bundle with model_export",
            code=ReasonCode.BUNDLE_INVALID,
        )
    return float(report.max_logit_spread)


def _whisper_outputs(
    golden: dict[str, np.ndarray], name: str, inputs: list[str], steps: StepRunner | None
) -> np.ndarray:
    """A Whisper model's golden row: its next-token logits along the row's token ids, from
    the position fp32's were kept (the prompt's last), shaped like the fp32 array."""
    if steps is None:
        raise BundleError(
            f"the golden set of {name} is a Whisper row: the self-check needs the engine's "
            "decoder to run it",
            code=ReasonCode.BUNDLE_INVALID,
        )
    (feature_name,) = inputs
    want = golden[f"{name}/fp32"]
    ids = [int(i) for i in golden[f"{name}/input_ids"][0]]
    logits = steps(name, golden[f"{name}/{feature_name}"], ids)
    return logits[len(ids) - want.shape[1] :][None]


def _rows(
    golden: dict[str, np.ndarray], name: str, inputs: list[str]
) -> list[dict[str, np.ndarray]]:
    """The feeds for a model's golden inputs: a model with an attention mask (dynamic int8,
    whose scales depend on the whole batch) gets one feed per input, cut to its length, as
    the engine runs text; any other model (static int8: the same numbers at any batch size)
    gets them all in one feed."""
    import numpy as np

    if "attention_mask" not in inputs:
        return [{x: golden[f"{name}/{x}"] for x in inputs}]
    rows = []
    for i in range(len(golden[f"{name}/fp32"])):
        feeds = {x: golden[f"{name}/{x}"][i : i + 1] for x in inputs}
        length = int(feeds["attention_mask"].sum())
        rows.append({x: np.ascontiguousarray(v[:, :length]) for x, v in feeds.items()})
    return rows


@dataclass(frozen=True)
class Readiness:
    """What `check_before_serving` decided for the process-wide engine."""

    #: "passed", "fallback" (served by fp32 fallback models), "failed" (refuses to answer) or
    #: "unavailable" (the bundle has no golden set: nothing to check with)
    status: Literal["passed", "fallback", "failed", "unavailable"]
    check: SelfCheck | None
    #: models now served from their fp32 fallback
    fallback: tuple[str, ...] = ()
    detail: str = ""

    @property
    def serving(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "fallback": list(self.fallback),
            "detail": self.detail,
            "check": self.check.to_dict() if self.check is not None else None,
        }


class _Checked(Protocol):
    """The engine as `check_before_serving` uses it."""

    bundle: Bundle
    unready: str | None

    def self_check(self, names: list[str] | None = None) -> SelfCheck: ...

    def use_fp32_fallback(self, names: list[str]) -> None: ...


def check_before_serving(engine: _Checked) -> Readiness:
    """The serving functions' policy: run the golden set on this CPU; where a model fails and
    the bundle carries its fp32 fallback, serve that instead (and check it too); otherwise the
    engine refuses to answer (SELFCHECK_FAILED) rather than give verdicts nobody checked. Logs
    the outcome and emits the metrics the alarm watches (SelfCheckFailed, SelfCheckMs)."""
    from alertfusion import observability

    try:
        check = engine.self_check()
    except BundleError as exc:
        if engine.bundle.golden is not None:
            raise  # the golden set exists but cannot be used: the bundle is broken
        readiness = Readiness("unavailable", None, detail=exc.message)
        observability.logger.warning("self-check unavailable", extra={"detail": exc.message})
        observability.count("SelfCheckUnavailable")
        return readiness
    readiness = Readiness("passed", check)
    if not check.passed:
        failing = check.failing
        models = engine.bundle.entries
        if all(models[name].fp32_fallback is not None for name in failing):
            engine.use_fp32_fallback(failing)
            again = engine.self_check(names=failing)
            readiness = Readiness(
                "fallback" if again.passed else "failed",
                check,
                tuple(failing),
                detail=f"fp32 fallback for {', '.join(failing)}: "
                + ("passed" if again.passed else "; ".join(again.lines()[1:])),
            )
        else:
            readiness = Readiness("failed", check, detail="; ".join(check.lines()[1:]))
        if readiness.status == "failed":
            engine.unready = (
                f"the bundle's self-check failed on this CPU ({check.cpu.describe()}): "
                f"{', '.join(failing)} disagree with fp32; see the logs"
            )
    log = observability.logger.info if readiness.status == "passed" else observability.logger.error
    log(f"self-check {readiness.status}", extra={"selfcheck": readiness.to_dict()})
    if readiness.status == "failed":
        observability.count("SelfCheckFailed")
    observability.milliseconds("SelfCheckMs", check.ms)
    if readiness.fallback:
        observability.count("SelfCheckFallback")
    return readiness
