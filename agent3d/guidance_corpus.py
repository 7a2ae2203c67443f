"""Training phrasings at scale: a seeded, compositional generator of guidance texts with their specification.

A phrasing is built from the parts an inspector combines: the defects of the asked kind named by a synonym or
technical term (protrusion, spatter, burr, pit, pore, void, chip, positive / negative deviation against CAD, ...),
a construction ("only X", "X are defects", "Y are fine, report X", "ignore Y", "not Y but X", questions, ...), an
optional clause naming design features that are normal (sharp edges, corners, holes by design), an optional size
("small", "large"), unrelated context around it, and noise (lower case, a typo). English and Korean are generated
alike; Korean particles (written ``<을>`` ...) follow the last syllable (을/를, 은/는, 이/가, 와/과).

The generator is the training data's only source: no phrasing is stored, and a phrasing that equals one of the
hand-written held-out set (``agent3d/shipped/guidance-held-out.toml``, after :func:`normalize`) is dropped, so the
evaluation never sees a training text (decontamination by exact match; the held-out texts were written first, by
hand, and never shaped the templates' choice). Each phrasing records its ``template`` (language, construction) so
that cross-validation can keep a construction in one fold.
"""

from __future__ import annotations

import random
import re

from agent3d.guidance_sets import held_out_texts
from agent3d.spec import SIZES

EN = {
    "raised": ["bumps", "protrusions", "bulges", "blobs of excess material", "spatter", "burrs", "lumps", "nodules",
               "blisters", "raised spots", "high spots", "excess material", "weld beads", "swellings", "warts",
               "material build-up", "positive deviations from CAD", "points above nominal", "outward bumps",
               "bosses that should not be there", "extra material", "beads of spatter", "mounds", "raised blemishes"],
    "sunk": ["pits", "dents", "dimples", "gouges", "pores", "voids", "chips", "craters", "pinholes", "cavities",
             "depressions", "sink marks", "missing material", "negative deviations from CAD", "points below nominal",
             "low spots", "hollows", "dings", "recesses", "porosity", "scratches", "inward dents", "nicks",
             "sunken spots"],
}
EN_ANY = ["defects", "anomalies", "flaws", "surface defects", "faults", "irregularities", "problems", "damage"]
EN_NORMAL = {
    "edges": ["sharp edges", "edges", "creases", "chamfers", "fold lines", "crisp edges", "edge lines"],
    "corners": ["corners", "vertices", "sharp corners", "pointed corners", "tips of the corners"],
    "holes": ["drilled holes", "bolt holes", "bores", "through-holes", "mounting holes", "threaded holes"],
}
EN_SIZE = {"small": ["small", "tiny", "minute", "fine"], "large": ["large", "big", "major", "sizeable"]}
EN_OK = ["are fine", "are normal", "are expected", "are cosmetic", "are within tolerance", "are acceptable",
         "do not matter", "are allowed", "can be ignored", "are not defects"]
EN_ONE = [  # constructions naming the asked kind X only
    "Only {X} count.", "Report only {X}.", "{X} are defects.", "Look for {X}.", "Find {X}.", "Flag {X}.",
    "We only care about {X}.", "The defects here are {X}.", "Check the surface for {X}.", "Are there {X}? Report them.",
    "{X} must be caught.", "Please mark the {X}.", "Any {X} is a reject.", "Inspect for {X} only.",
    "Our concern is {X}.", "This batch has a problem with {X}.", "Reject parts with {X}.", "{X} only.",
    "Where are the {X}?", "Detect {X} on this part."]
EN_TWO = [  # constructions with the asked kind X and the other kind Y
    "{Y} {OK}; report {X}.", "Ignore {Y}, flag {X}.", "Not {Y} but {X}.", "{X} matter, {Y} do not.",
    "{Y} {OK}, but {X} must be caught.", "Report {X}, not {Y}.", "Skip the {Y} and find the {X}.",
    "{X} are defects; {Y} {OK}.", "Don't report {Y}. Report {X}.", "Forget about {Y}; only {X} count.",
    "We care about {X} rather than {Y}.", "{Y}? No. {X}? Yes."]
EN_ANY_FORMS = [
    "Find all {A}.", "Report every kind of {A}.", "Check this part for {A}.", "Both {R} and {S} matter.",
    "{R} and {S} are both defects.", "Look for {R} or {S}.", "Report {R} as well as {S}.", "Any {A} counts.",
    "Find {A}, whatever their shape.", "No preference: {R}, {S}, anything.", "Inspect the part.",
    "{R} and {S} alike must be reported.", "Flag all {A}, raised or sunk.", "Deviations in either direction count.",
    "Please review this scan for {A}.", "What {A} does this part have?"]
EN_NORMAL_FORMS = ["The {F} {OK}.", "{F} are part of the design.", "Ignore the {F}.", "The {F} are by design.",
                   "Do not flag the {F}.", "{F} are intended features."]
EN_CONTEXT = ["Part 12 from line B.", "This is a cast aluminium housing.", "Scanned this morning.",
              "Customer order 4471.", "The part was machined yesterday.", "Operator: J. Kim.",
              "The scan is from the second shift.", "This is a plastic cover from the injection mold.",
              "Please be quick, the line is waiting.", "Resolution is about 0.1 mm."]

KO = {
    "raised": ["돌기", "돌출부", "볼록한 부분", "혹", "덩어리", "스패터", "버", "이물질", "융기", "부풀어 오른 곳",
               "튀어나온 곳", "살이 남은 곳", "양의 편차", "과잉 재료", "솟은 부분", "용접 비드", "기포 부풀음",
               "위로 올라온 부분", "볼록 결함", "CAD보다 높은 곳"],
    "sunk": ["찍힘", "함몰", "움푹 들어간 곳", "파임", "기공", "핀홀", "스크래치", "덴트", "크레이터", "오목한 부분",
             "결손", "음의 편차", "깨진 곳", "홈", "꺼진 부분", "보이드", "재료 부족", "긁힘", "오목 결함",
             "CAD보다 낮은 곳"],
}
KO_ANY = ["결함", "이상", "불량", "결점", "흠", "이상 부위"]
KO_NORMAL = {
    "edges": ["날카로운 모서리", "모서리", "각진 선", "에지", "접힌 선", "모따기 선"],
    "corners": ["꼭짓점", "코너", "뾰족한 코너", "모서리 끝점"],
    "holes": ["드릴 구멍", "볼트 구멍", "관통 구멍", "체결 구멍", "나사 구멍", "설계된 구멍"],
}
KO_SIZE = {"small": ["작은", "미세한", "아주 작은"], "large": ["큰", "커다란", "대형"]}
KO_OK = ["<은> 괜찮습니다", "<은> 정상입니다", "<은> 허용됩니다", "<은> 문제없습니다", "<은> 무시하세요",
         "<은> 결함이 아닙니다", "<은> 외관상 문제일 뿐입니다"]
KO_ONE = ["{X}만 찾아 주세요.", "{X}<를> 불량으로 봅니다.", "{X}<이> 결함입니다.", "{X}<를> 찾으세요.",
          "{X}<이> 있는지 확인해 주세요.", "{X}만 보고하세요.", "{X}<를> 표시해 주세요.", "{X}만 중요합니다.",
          "이번 로트는 {X} 문제가 있습니다.", "{X} 검사 부탁드립니다.", "{X}<이> 있으면 불합격입니다.",
          "{X} 어디 있나요?", "{X}만요.", "{X}<를> 잡아야 합니다."]
KO_TWO = ["{Y}{OK}. {X}<를> 보고하세요.", "{Y}<는> 무시하고 {X}만 표시하세요.", "{Y} 말고 {X}<를> 찾아 주세요.",
          "{X}<는> 중요하고 {Y}<는> 상관없습니다.", "{Y}{OK}. 하지만 {X}<는> 잡아야 합니다.",
          "{Y}<는> 빼고 {X}만요.", "{X}<는> 불량, {Y}<는> 허용.", "{Y}<는> 보지 말고 {X}<를> 보세요."]
KO_ANY_FORMS = ["모든 {A}<를> 찾아 주세요.", "{R}<와> {S} 모두 중요합니다.", "이 부품의 {A}<를> 검사해 주세요.",
                "{R}<이>든 {S}<이>든 다 보고하세요.", "{A} 종류는 상관없습니다.", "{R}<와> {S}<를> 똑같이 보세요.",
                "어느 방향이든 벗어난 곳은 {A}입니다.", "부품을 검사해 주세요.", "{A}<이> 있는지 봐 주세요.",
                "{R}, {S} 전부 찾아 주세요."]
KO_NORMAL_FORMS = ["{F}{OK}.", "{F}<는> 설계의 일부입니다.", "{F}<는> 무시하세요.", "{F}<는> 원래 있는 것입니다.",
                   "{F}<는> 표시하지 마세요."]
KO_CONTEXT = ["B 라인 12번 부품입니다.", "알루미늄 주조 하우징입니다.", "오늘 아침에 스캔했습니다.",
              "주문 번호 4471입니다.", "어제 가공한 부품입니다.", "2교대 스캔입니다.", "사출 성형 커버입니다."]

PARTICLES = {"<을>": ("을", "를"), "<를>": ("을", "를"), "<은>": ("은", "는"), "<는>": ("은", "는"),
             "<이>": ("이", "가"), "<가>": ("이", "가"), "<와>": ("과", "와"), "<과>": ("과", "와")}


def normalize(text: str) -> str:
    """A phrasing's comparison form: lower case, punctuation and runs of spaces removed."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", text.lower())).strip()


def attach(text: str) -> str:
    """Korean particles after the noun before them: the consonant form after a syllable with a final consonant."""
    def pick(match: re.Match) -> str:
        before = text[:match.start()].rstrip()
        last = before[-1] if before else ""
        final = "\uac00" <= last <= "\ud7a3" and (ord(last) - 0xAC00) % 28 != 0
        return PARTICLES[match.group(0)][0 if final else 1]
    return re.sub("|".join(re.escape(p) for p in PARTICLES), pick, text)


def _typo(text: str, rng: random.Random) -> str:
    words = [i for i, w in enumerate(text.split(" ")) if len(w) > 4 and w.isalpha()]
    if not words:
        return text
    parts = text.split(" ")
    word = parts[rng.choice(words)]
    j = rng.randrange(1, len(word) - 1)
    parts[parts.index(word)] = word[:j] + word[j + 1] + word[j] + word[j + 2:]
    return " ".join(parts)


def _sized(noun: str, size: str, language: str, rng: random.Random) -> str:
    if size == "any":
        return noun
    return f"{rng.choice((EN_SIZE if language == 'en' else KO_SIZE)[size])} {noun}"


def phrasing(rng: random.Random, language: str) -> dict:
    """One generated phrasing: ``{"text", "kind", "normal", "size", "language", "template"}``."""
    kind = rng.choice(("raised", "sunk", "any"))
    size = rng.choices(SIZES, weights=(1, 1, 6))[0]
    nouns, anys, normal_words, oks = (EN, EN_ANY, EN_NORMAL, EN_OK) if language == "en" else \
        (KO, KO_ANY, KO_NORMAL, KO_OK)
    if kind == "any":
        form = rng.choice(EN_ANY_FORMS if language == "en" else KO_ANY_FORMS)
        text = form.format(A=_sized(rng.choice(anys), size, language, rng), R=rng.choice(nouns["raised"]),
                           S=rng.choice(nouns["sunk"]))
        if "{A}" not in form:
            size = "any"
    else:
        other = "sunk" if kind == "raised" else "raised"
        two = rng.random() < 0.5
        form = rng.choice((EN_TWO if two else EN_ONE) if language == "en" else (KO_TWO if two else KO_ONE))
        text = form.format(X=_sized(rng.choice(nouns[kind]), size, language, rng), Y=rng.choice(nouns[other]),
                           OK=rng.choice(oks))
    normal = sorted(rng.sample(list(normal_words), rng.choice((1, 1, 2)))) if rng.random() < 0.3 else []
    clauses = [text]
    for feature in normal:
        forms = EN_NORMAL_FORMS if language == "en" else KO_NORMAL_FORMS
        clauses.append(rng.choice(forms).format(F=rng.choice(normal_words[feature]), OK=rng.choice(oks)))
    rng.shuffle(clauses)
    if rng.random() < 0.2:
        clauses.insert(rng.choice((0, len(clauses))), rng.choice(EN_CONTEXT if language == "en" else KO_CONTEXT))
    text = " ".join(c[0].upper() + c[1:] if language == "en" else c for c in clauses)
    text = attach(text) if language == "ko" else text
    if language == "en" and rng.random() < 0.15:
        text = text.lower()
    if rng.random() < 0.1:
        text = _typo(text, rng) if language == "en" else text.rstrip(".")
    return {"text": text, "kind": kind, "normal": normal, "size": size, "language": language,
            "template": f"{language}: {form}"}


def generate(n: int, seed: int = 0, languages: tuple[str, ...] = ("en", "ko"),
             exclude: set[str] | None = None) -> list[dict]:
    """``n`` distinct generated phrasings, languages in turn.

    Parameters
    ----------
    n : int
        Phrasings to return.
    seed : int, default 0
        The same seed gives the same phrasings, in the same order.
    languages : tuple of {"en", "ko"}, default ("en", "ko")
    exclude : set of str, optional
        :func:`normalize`-d texts never to emit (the held-out set's, by default; an empty set to keep all).

    Returns
    -------
    list of dict
        From :func:`phrasing`.

    Raises
    ------
    ValueError
        ``n`` is more than the generator can make distinct within 50 tries per phrasing.
    """
    rng = random.Random(seed)
    exclude = {normalize(t) for t in held_out_texts()} if exclude is None else exclude
    seen, out = set(exclude), []
    for _ in range(50 * n):
        if len(out) == n:
            return out
        entry = phrasing(rng, languages[len(out) % len(languages)])
        key = normalize(entry["text"])
        if key not in seen:
            seen.add(key)
            out.append(entry)
    raise ValueError(f"could not generate {n} distinct phrasings")
