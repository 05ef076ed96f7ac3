"""Deterministic Korean text: a training corpus for demo SentencePiece models and a test corpus.

Nothing here is downloaded: sentences are generated from small hand-written word lists with a
seeded `random.Random`, so the same arguments always give the same text (and therefore the
same demo tokenizer). The training corpus is ordinary emergency-call and everyday speech plus
pseudo-words built from the 2,350 common Hangul syllables (so a 8,000-piece vocabulary can be
learnt from it). The test corpus adds what real transcripts and API clients send: numbers,
English, emoji, odd whitespace, full-width and NFD-decomposed text, very long lines and
characters no model has seen.
"""

from __future__ import annotations

import random
import string
import unicodedata
from collections.abc import Callable
from functools import lru_cache

# --- word lists ---------------------------------------------------------------------------

_PEOPLE = (
    "저",
    "제가",
    "나",
    "내가",
    "우리",
    "엄마",
    "아빠",
    "아이",
    "동생",
    "친구",
    "남자",
    "여자",
    "아저씨",
    "아주머니",
    "할머니",
    "할아버지",
    "경찰",
    "선생님",
    "사장님",
    "직원",
    "누가",
    "어떤 사람",
    "모르는 사람",
    "옆집 사람",
    "택시 기사",
    "배달원",
    "학생",
    "손님",
)
_PLACES = (
    "집",
    "학교",
    "회사",
    "편의점",
    "지하철역",
    "버스 정류장",
    "공원",
    "골목",
    "주차장",
    "엘리베이터",
    "계단",
    "화장실",
    "식당",
    "카페",
    "병원",
    "은행",
    "시장",
    "아파트 앞",
    "놀이터",
    "횡단보도",
    "터미널",
    "공항",
    "도서관",
    "마트",
    "택시 안",
    "지하도",
)
_THINGS = (
    "지갑",
    "가방",
    "휴대폰",
    "핸드폰",
    "카드",
    "돈",
    "현금",
    "자전거",
    "오토바이",
    "차",
    "열쇠",
    "노트북",
    "시계",
    "목걸이",
    "신발",
    "우산",
    "택배",
    "상자",
    "칼",
    "몽둥이",
    "물",
    "밥",
    "커피",
    "약",
    "우유",
    "빵",
    "사진",
    "문",
    "창문",
    "불",
)
_HELP = (
    "도와주세요",
    "살려주세요",
    "누가 좀 도와주세요",
    "119 불러 주세요",
    "112에 신고해 주세요",
    "사람이 쓰러졌어요",
    "숨을 안 쉬어요",
    "여기 다친 사람이 있어요",
    "불이야",
    "구해 주세요",
    "아이가 없어졌어요",
    "길을 잃었어요",
    "문이 안 열려요",
    "엘리베이터에 갇혔어요",
)
_ROBBERY = (
    "돈 내놔",
    "가진 거 다 내놔",
    "움직이면 죽는다",
    "칼 들고 협박했어요",
    "지갑 빼앗겼어요",
    "강도가 들었어요",
    "조용히 해",
    "소리 지르지 마",
    "가방을 뺏어 갔어요",
    "돈을 요구했어요",
)
_SEXUAL = (
    "만지지 마세요",
    "하지 마세요",
    "손 치워",
    "저리 가세요",
    "자꾸 몸을 만져요",
    "강제로 끌고 가려고 했어요",
    "이상한 사람이 따라와요",
    "성추행을 당했어요",
    "싫다고 했잖아요",
)
_THEFT = (
    "도둑이야",
    "지갑을 도둑맞았어요",
    "자전거를 훔쳐 갔어요",
    "누가 가방을 가져갔어요",
    "휴대폰이 없어졌어요",
    "차 안에 있던 물건이 사라졌어요",
    "소매치기를 당했어요",
)
_VIOLENCE = (
    "때리지 마세요",
    "아파요",
    "그만해",
    "맞았어요",
    "싸움이 났어요",
    "누가 저를 때렸어요",
    "발로 찼어요",
    "멱살을 잡았어요",
    "밀쳐서 넘어졌어요",
    "피가 나요",
    "죽여 버린다",
)
_REGULAR = (
    "안녕하세요",
    "오늘 날씨가 좋네요",
    "점심 뭐 먹을까",
    "내일 몇 시에 만나",
    "지금 가고 있어",
    "수업이 끝났어요",
    "커피 한 잔 할래요",
    "주말에 영화 보러 가자",
    "배고파요",
    "고마워요",
    "잘 자",
    "다녀왔습니다",
    "이거 얼마예요",
    "문 좀 열어 줄래",
    "택배 왔어요",
    "괜찮아요",
    "회의가 늦게 끝났어",
    "버스가 안 와요",
    "숙제 다 했어",
    "생일 축하해",
)
_ADVERBS = (
    "빨리",
    "지금",
    "제발",
    "진짜",
    "정말",
    "너무",
    "갑자기",
    "아까",
    "방금",
    "계속",
    "조금",
    "다시",
    "혹시",
    "좀",
    "벌써",
    "아직",
    "또",
    "같이",
    "혼자",
    "몰래",
    "천천히",
)
_VERBS = (
    "가",
    "오",
    "보",
    "먹",
    "찾",
    "잡",
    "열",
    "닫",
    "부르",
    "기다리",
    "도망가",
    "따라오",
    "소리치",
    "울",
    "웃",
    "숨",
    "뛰",
    "걷",
    "넘어지",
    "다치",
    "잃어버리",
    "훔치",
    "때리",
)
_ENDINGS = (
    "요",
    "어요",
    "았어요",
    "었어요",
    "세요",
    "고 있어요",
    "지 마세요",
    "려고 해요",
    "ㄹ게요",
    "는데요",
    "습니다",
    "ㅂ니다",
    "자",
    "어",
    "아",
    "니",
    "래",
    "지",
    "네",
)
_PARTICLES = (
    "이",
    "가",
    "을",
    "를",
    "은",
    "는",
    "에",
    "에서",
    "으로",
    "로",
    "와",
    "과",
    "도",
    "만",
)
_ENGLISH = (
    "help",
    "police",
    "OK",
    "CCTV",
    "iPhone",
    "Galaxy",
    "KTX",
    "SRT",
    "PC방",
    "GS25",
    "CU",
    "taxi",
    "Wi-Fi",
    "USB",
    "SNS",
    "ID",
    "stop",
    "sorry",
    "thank you",
    "emergency",
)
_EMOJI = (
    "😭",
    "😱",
    "🚨",
    "🙏",
    "😡",
    "😢",
    "👍",
    "❤️",
    "🔥",
    "🚓",
    "🚑",
    "😂",
    "🤔",
    "👍🏽",
    "👨\u200d👩\u200d👧",
    "🏳️\u200d🌈",
    "🇰🇷",
)
_PUNCT = (
    ".",
    "!",
    "?",
    "...",
    "!!",
    "?!",
    ",",
    "~",
    "ㅠㅠ",
    "ㅋㅋ",
    "ㅎㅎ",
    "ㅋㅋㅠㅠ",
    "ㅜㅜ",
    "…",
)

# Characters no demo model is trained on: other scripts, rare symbols, private use, controls.
_UNSEEN = (
    "漢字",
    "東京",
    "こんにちは",
    "カタカナ",
    "Привет",
    "مرحبا",
    "नमस्ते",
    "ภาษาไทย",
    "Ωμέγα",
    "∮∇∂",
    "𝐀𝐁𝐂",
    "𝕜𝕠𝕣𝕖𝕒",
    "\ue000\ue001",
    "\x00",
    "\x7f",
    "\u0301",
    "☃",
    "♬",
    "⌘",
    "𓀀",
    "똠뷁",
    "쌰쒸",
    "꿻뷃",
    "\u2581",
    "\ufffd",
    "\u200d",
    "\u00ad",
)
# Strings that look like special pieces: SentencePiece must not treat them as special tokens.
_SPECIAL_LOOKALIKES = (
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "[PAD]",
    "[UNK]",
    "<unk>",
    "<s>",
    "</s>",
    "<pad>",
    "[cls]",
)
# Whitespace SentencePiece's normaliser collapses or maps to a space.
_ODD_SPACES = (" ", "  ", "   ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "\u2003", "\u200b")


def _pick(rng: random.Random, words: tuple[str, ...]) -> str:
    return words[rng.randrange(len(words))]


@lru_cache(maxsize=1)
def common_hangul_syllables() -> tuple[str, ...]:
    """The 2,350 Hangul syllables of KS X 1001 (those EUC-KR encodes in two bytes)."""
    out = []
    for cp in range(0xAC00, 0xD7A4):
        ch = chr(cp)
        try:
            if len(ch.encode("euc_kr")) == 2:
                out.append(ch)
        except UnicodeEncodeError:
            continue
    return tuple(out)


def _number(rng: random.Random) -> str:
    kind = rng.randrange(7)
    if kind == 0:
        return f"010-{rng.randrange(10000):04d}-{rng.randrange(10000):04d}"
    if kind == 1:
        return f"{rng.randrange(1, 13)}시 {rng.randrange(60)}분"
    if kind == 2:
        return f"{rng.randrange(1, 100)}만 원"
    if kind == 3:
        return f"{rng.randrange(1990, 2031)}년 {rng.randrange(1, 13)}월 {rng.randrange(1, 29)}일"
    if kind == 4:
        return _pick(rng, ("112", "119", "1588-1234", "3번 출구", "2호선", "101동 1203호"))
    if kind == 5:
        return f"{rng.randrange(1, 1000):,}"
    return str(rng.randrange(10 ** rng.randrange(1, 8)))


def _pseudo_word(rng: random.Random) -> str:
    syllables = common_hangul_syllables()
    # Skewed towards the start of the table (common syllables) so pieces repeat often enough.
    n = rng.choice((1, 2, 2, 3, 3, 4))
    return "".join(syllables[int(len(syllables) * rng.random() ** 2)] for _ in range(n))


def _clause(rng: random.Random, *, pseudo: bool = True) -> str:
    kind = rng.randrange(9) if pseudo else rng.choice((0, 1, 2, 3, 4, 5, 8))
    if kind == 0:
        return (
            f"{_pick(rng, _PEOPLE)}{_pick(rng, ('가', '이', '는'))} {_pick(rng, _PLACES)}에서 "
            f"{_pick(rng, _ADVERBS)} {_pick(rng, _VERBS)}{_pick(rng, _ENDINGS)}"
        )
    if kind == 1:
        return (
            f"{_pick(rng, _THINGS)}{_pick(rng, _PARTICLES)} {_pick(rng, _VERBS)}"
            f"{_pick(rng, _ENDINGS)}"
        )
    if kind == 2:
        return _pick(rng, _HELP + _ROBBERY + _SEXUAL + _THEFT + _VIOLENCE)
    if kind == 3:
        return _pick(rng, _REGULAR)
    if kind == 4:
        return f"{_pick(rng, _PLACES)} {_number(rng)}"
    if kind == 5:
        return f"{_pick(rng, _ADVERBS)} {_pick(rng, _HELP + _REGULAR)}"
    if kind == 6:
        return (
            f"{_pseudo_word(rng)}{_pick(rng, _PARTICLES)} {_pseudo_word(rng)}{_pick(rng, _ENDINGS)}"
        )
    if kind == 7:
        return " ".join(_pseudo_word(rng) for _ in range(rng.randrange(2, 6)))
    return f"{_pick(rng, _PEOPLE)} {_pick(rng, _THINGS)} {_pick(rng, _ENGLISH)}"


def _sentence(rng: random.Random, *, pseudo: bool = True) -> str:
    parts = [_clause(rng, pseudo=pseudo) for _ in range(rng.randrange(1, 4))]
    text = " ".join(parts)
    if rng.random() < 0.6:
        text += _pick(rng, _PUNCT)
    return text


def training_corpus(n_sentences: int = 40_000, *, seed: int = 0, rich: bool = True) -> list[str]:
    """Sentences for training demo SentencePiece models (no odd whitespace, no unseen scripts).

    `rich` adds pseudo-words and every common Hangul syllable (at least once), so an
    8,000-piece vocabulary can be learnt; without it the text uses only the word lists (a few
    hundred distinct characters), which suits models of a few hundred pieces.
    """
    rng = random.Random(f"alertfusion-train-{seed}")
    lines = [_sentence(rng, pseudo=rich) for _ in range(n_sentences)]
    if rich:
        syllables = common_hangul_syllables()
        lines.extend(" ".join(syllables[i : i + 50]) for i in range(0, len(syllables), 50))
    lines.extend(_pick(rng, _ENGLISH) + " " + _number(rng) for _ in range(200))
    # Bracketed capitals (section markers, "[CCTV]"-style tags) keep Latin capitals and
    # brackets in every model's alphabet, however small.
    lines.extend(
        " ".join(
            "["
            + "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randrange(2, 6)))
            + "]"
            for _ in range(rng.randrange(1, 4))
        )
        for _ in range(300)
    )
    return lines


# --- the test corpus --------------------------------------------------------------------------


def _odd_spacing(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    out = _pick(rng, _ODD_SPACES) if rng.random() < 0.5 else ""
    for i, word in enumerate(words):
        if i:
            out += _pick(rng, _ODD_SPACES)
        out += word
    if rng.random() < 0.5:
        out += _pick(rng, _ODD_SPACES)
    return out


def _full_width(text: str) -> str:
    return "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in text
    )


def _nfd(rng: random.Random, text: str) -> str:
    if rng.random() < 0.5:
        return unicodedata.normalize("NFD", text)
    # Only some words decomposed: mixed NFC/NFD input, as copy-pasted text sometimes is.
    return " ".join(
        unicodedata.normalize("NFD", w) if rng.random() < 0.5 else w for w in text.split(" ")
    )


def _with_numbers(rng: random.Random, text: str) -> str:
    return f"{text} {_number(rng)} {_number(rng)}"


def _with_english(rng: random.Random, text: str) -> str:
    return f"{_pick(rng, _ENGLISH)} {text} {_pick(rng, _ENGLISH)}{_pick(rng, _PUNCT)}"


def _with_emoji(rng: random.Random, text: str) -> str:
    return f"{text}{_pick(rng, _EMOJI)}{_pick(rng, _EMOJI) if rng.random() < 0.5 else ''}"


def _with_unseen(rng: random.Random, text: str) -> str:
    return f"{_pick(rng, _UNSEEN)} {text}{_pick(rng, _UNSEEN)}"


def _with_lookalikes(rng: random.Random, text: str) -> str:
    return f"{_pick(rng, _SPECIAL_LOOKALIKES)} {text}{_pick(rng, _SPECIAL_LOOKALIKES)}"


def _very_long(rng: random.Random, text: str) -> str:
    # Mostly past KoBERT's 60 tokens, sometimes past BERT's 512 positions.
    n = rng.randrange(15, 40) if rng.random() < 0.8 else rng.randrange(60, 120)
    return " ".join([text] + [_sentence(rng) for _ in range(n)])


_VARIANTS: tuple[Callable[[random.Random, str], str], ...] = (
    lambda rng, t: t,
    _odd_spacing,
    lambda rng, t: _full_width(t),
    _nfd,
    _with_numbers,
    _with_english,
    _with_emoji,
    _with_unseen,
    _with_lookalikes,
    _very_long,
)

# Edge cases always present, whatever the seed.
FIXED_CASES: tuple[str, ...] = (
    "",
    " ",
    "   ",
    "\t\n",
    "\u3000\u00a0",
    "\u200b",
    "도와주세요",
    " 도와주세요 ",
    "도와주세요\t\t살려주세요",
    "▁도와주세요",
    "도와주세요▁",
    "▁",
    "[CLS] 도와주세요 [SEP]",
    "[MASK]",
    "<unk>",
    "😭😭😭",
    "漢字漢字 漢字",
    "ＡＢＣ １２３ ！？",
    unicodedata.normalize("NFD", "살려주세요 강도야"),
    "ㄱㄴㄷ ㅋㅋㅋ ㅠㅠ",
    # Chat-style jamo: SentencePiece composes consonant + vowel jamo ("ㅋㅠ" -> "큐").
    "ㅋㅋㅠㅠ 살려줘ㅜㅜ",
    "ㅎㅏ이 ㄴㅔ ㄱㅏㄱ",
    "가ㄳ 각ᆨ ᄀ각",
    "a" * 300,
    "가" * 300,
    "도와 " * 200,
)


def evaluation_corpus(n_sentences: int = 1_200, *, seed: int = 0) -> list[str]:
    """At least `n_sentences` Korean test sentences (plus FIXED_CASES), deterministic per seed.

    Each generated sentence gets one or two variants (odd spacing, full-width, NFD, numbers,
    English, emoji, unseen characters, special-token look-alikes, very long lines).
    """
    rng = random.Random(f"alertfusion-test-{seed}")
    out = list(FIXED_CASES)
    while len(out) < n_sentences + len(FIXED_CASES):
        text = _sentence(rng)
        for _ in range(rng.choice((1, 1, 2))):
            text = _VARIANTS[rng.randrange(len(_VARIANTS))](rng, text)
        out.append(text)
    return out
