"""Calibration inputs: feature images from the user's audio (through the runtime's own decoding
and feature code) and Korean texts (the recordings' transcripts plus generated sentences).

Static int8 for the audio models is calibrated on these images, and every int8 model's
agreement with fp32 is measured on them. Besides the consecutive 5 s windows the runtime cuts,
each recording is also cut with the window start shifted by a quarter, half and three quarters
of a window: more distinct images from the same audio, all of them windows the runtime could
see in a recording that starts a little earlier or later.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alertfusion.errors import AlertFusionError
from alertfusion.manifest import AudioPreprocessing
from model_export.errors import ExportError, ExportReason

TRANSCRIPTS_FILE = "transcripts.json"
#: window starts, as fractions of a window, of the passes over each recording
SHIFTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
#: calibration images kept at most (evenly spaced over all of them, in file order)
MAX_IMAGES = 256
#: a shifted pass is skipped when less audio than this remains
_MIN_SECONDS = 0.5


@dataclass(frozen=True)
class CalibrationImages:
    images: np.ndarray  # float32 (N, C, H, W)
    recording: np.ndarray  # int64 (N,): index into `files` of each image's recording
    files: tuple[str, ...]


def audio_files(directory: Path) -> list[Path]:
    """The audio files of `directory` (by the extensions the pipeline accepts), sorted."""
    from alertfusion.keys import SUPPORTED_EXTENSIONS

    directory = Path(directory)
    if not directory.is_dir():
        raise ExportError(
            ExportReason.CALIBRATION_INVALID,
            f"calibration audio directory {directory} does not exist or is not a directory",
        )
    files = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix.lower().lstrip(".") in SUPPORTED_EXTENSIONS
    )
    if not files:
        raise ExportError(
            ExportReason.CALIBRATION_INVALID,
            f"no audio files in {directory} (looked for {', '.join(sorted(SUPPORTED_EXTENSIONS))})",
        )
    return files


def calibration_images(
    directory: Path,
    cfg: AudioPreprocessing,
    *,
    shifts: tuple[float, ...] = SHIFTS,
    max_images: int = MAX_IMAGES,
) -> CalibrationImages:
    """Feature images of every recording in `directory`, made by `alertfusion.audio` and
    `alertfusion.features` exactly as the runtime makes them. A file that does not decode is a
    CALIBRATION_INVALID naming it (the user chose these files; skipping one would hide it).

    Remembered per process for the same files (name, size, mtime) and settings: the demo and
    the bundle step it runs use the same images.
    """
    files = audio_files(directory)
    key = (
        tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files),
        cfg.model_dump_json(),
        shifts,
        max_images,
    )
    cached = _CACHE.get(key)
    if cached is None:
        cached = _calibration_images(files, cfg, shifts=shifts, max_images=max_images)
        _CACHE.clear()  # one set at a time is all the demo needs
        _CACHE[key] = cached
    return cached


_CACHE: dict[object, CalibrationImages] = {}


def _calibration_images(
    files: list[Path], cfg: AudioPreprocessing, *, shifts: tuple[float, ...], max_images: int
) -> CalibrationImages:
    from alertfusion.audio import decode_audio
    from alertfusion.features import build_feature_images

    images: list[np.ndarray] = []
    owners: list[int] = []
    for index, path in enumerate(files):
        try:
            samples = decode_audio(path, sample_rate=cfg.sample_rate).samples
            window = cfg.window_samples
            for shift in shifts:
                start = round(shift * window)
                if start and len(samples) - start < _MIN_SECONDS * cfg.sample_rate:
                    continue
                batch = build_feature_images(samples[start:], cfg).images
                images.append(batch)
                owners.extend([index] * len(batch))
        except AlertFusionError as exc:
            raise ExportError(
                ExportReason.CALIBRATION_INVALID,
                f"calibration audio {path} is unusable: {exc.code}: {exc.message}",
            ) from exc
    stacked = np.ascontiguousarray(np.concatenate(images), dtype=np.float32)
    recording = np.asarray(owners, dtype=np.int64)
    if not np.isfinite(stacked).all():
        raise ExportError(
            ExportReason.CALIBRATION_INVALID, "calibration images hold non-finite values"
        )
    if len(stacked) > max_images:
        keep = np.linspace(0, len(stacked) - 1, max_images).round().astype(np.int64)
        stacked, recording = np.ascontiguousarray(stacked[keep]), recording[keep]
    stacked.setflags(write=False)
    return CalibrationImages(
        images=stacked,
        recording=recording,
        files=tuple(p.name for p in files),
    )


def recording_transcripts(directory: Path | None) -> list[str]:
    """The texts of `transcripts.json` (file name -> transcript) next to the recordings, if
    there is one."""
    if directory is None:
        return []
    path = Path(directory) / TRANSCRIPTS_FILE
    if not path.is_file():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(
            ExportReason.CALIBRATION_INVALID, f"{path} is not a readable JSON file: {exc}"
        ) from exc
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ExportError(
            ExportReason.CALIBRATION_INVALID,
            f"{path} must map file names to transcript strings",
        )
    return [text for _, text in sorted(raw.items()) if text.strip()]


def read_text_lines(path: Path) -> list[str]:
    """Calibration texts from a UTF-8 file, one per line (blank lines ignored)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(
            ExportReason.CALIBRATION_INVALID, f"calibration texts {path} are unreadable: {exc}"
        ) from exc
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ExportError(ExportReason.CALIBRATION_INVALID, f"calibration texts {path} are empty")
    return texts


# --- generated Korean sentences, by theme (the six classes' order) ---------------------------

_THEMES: tuple[tuple[str, ...], ...] = (
    (  # regular
        "오늘 저녁에 뭐 먹을까",
        "내일 아침 아홉 시에 회의가 있어요",
        "버스가 조금 늦게 온대요",
        "주말에 같이 영화 보러 갈래",
        "방금 집에 도착했어",
        "커피 한 잔 마시고 올게요",
        "날씨가 많이 따뜻해졌네요",
        "숙제는 다 끝냈어",
    ),
    (  # help
        "도와주세요 사람이 쓰러졌어요",
        "여기 다친 사람이 있어요 빨리 와주세요",
        "살려주세요 아무도 없어요",
        "숨을 안 쉬어요 구급차 불러주세요",
        "엘리베이터에 갇혔어요 꺼내주세요",
        "불이 났어요 119에 신고해 주세요",
        "아이가 없어졌어요 같이 찾아주세요",
        "길을 잃었어요 도와주실 수 있나요",
    ),
    (  # robbery
        "가진 돈 다 내놔",
        "움직이면 찌른다 지갑 이리 줘",
        "칼을 들고 돈을 요구했어요",
        "소리 지르면 죽는다 가방 내놔",
        "강도가 들어와서 금고를 열라고 했어요",
        "휴대폰이랑 카드 전부 내놔",
        "조용히 하고 돈만 줘",
        "복면 쓴 남자가 돈을 빼앗아 갔어요",
    ),
    (  # sexual
        "만지지 마세요 하지 마세요",
        "싫다고 했잖아요 손 치우세요",
        "모르는 사람이 자꾸 몸을 만져요",
        "강제로 끌고 가려고 했어요",
        "이상한 사람이 계속 따라와요",
        "지하철에서 성추행을 당했어요",
        "저리 가세요 신고할 거예요",
        "억지로 안으려고 했어요",
    ),
    (  # theft
        "도둑이야 저 사람 잡아주세요",
        "지갑을 도둑맞았어요",
        "자전거를 누가 훔쳐 갔어요",
        "차 안에 있던 가방이 사라졌어요",
        "소매치기를 당한 것 같아요",
        "가게 물건을 몰래 가져갔어요",
        "집에 와 보니 노트북이 없어졌어요",
        "택배를 누가 가져가 버렸어요",
    ),
    (  # violence
        "때리지 마세요 그만하세요",
        "누가 저를 발로 찼어요",
        "싸움이 나서 사람이 맞고 있어요",
        "멱살을 잡고 밀쳤어요",
        "피가 나요 너무 아파요",
        "술 취한 사람이 주먹을 휘둘렀어요",
        "그만해 제발 그만 때려",
        "죽여 버린다고 소리쳤어요",
    ),
)
_PREFIXES = ("", "", "저기요 ", "지금 ", "제발 ", "여보세요 ", "빨리 ", "아 ", "진짜 ")
_SUFFIXES = ("", "", ".", "!", "?", "...", " 여기 역 앞이에요", " 주소는 중앙로 12번길이에요")


def generated_texts(n: int, *, seed: int = 0) -> list[tuple[str, int]]:
    """`n` deterministic Korean sentences, each with the index (class order) of its theme:
    themes take turns, each sentence one or two phrases of its theme with a prefix/suffix."""
    rng = random.Random(f"alertfusion-calibration-{seed}")
    out = []
    for i in range(n):
        theme = i % len(_THEMES)
        phrases = _THEMES[theme]
        body = rng.choice(phrases)
        if rng.random() < 0.4:
            body += " " + rng.choice(phrases)
        out.append((rng.choice(_PREFIXES) + body + rng.choice(_SUFFIXES), theme))
    return out


def calibration_texts(
    directory: Path | None,
    *,
    n_generated: int = 120,
    seed: int = 0,
    extra: Sequence[str] = (),
) -> list[str]:
    """The recordings' transcripts, any `extra` texts, then `n_generated` generated ones."""
    texts = recording_transcripts(directory) + list(extra)
    texts += [text for text, _ in generated_texts(n_generated, seed=seed)]
    return texts
