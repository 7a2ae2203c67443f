"""Asking the language model for suspects, and never trusting its answer.

Each reply is parsed and validated: a reply that is not a JSON object with a ``suspects`` list, or
whose every item fails the schema, is retried (at most ``retries`` times) with the error fed back to the model; inside a usable reply,
items that fail the :class:`~agent3d.cloud.Suspect` schema, name an id that was not shown, or
repeat an id are dropped and counted. When a tile's replies stay unusable the failure is recorded
and that tile contributes no suspects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from agent3d.cloud import LLMReport, Suspect, SuspectList
from agent3d.geometry import CloudContext
from agent3d.llm.base import Backend, Messages, response_schema
from agent3d.llm.cache import discard
from agent3d.prompts import PromptTemplate
from agent3d.verbalize import View, overview_of, split_into_tiles, zoomed_view

MAX_SUSPECTS = 8  # default of --max-suspects (DetectConfig.max_suspects)
REASON_CHARS = 12


class ReplyError(ValueError):
    """A reply that cannot be used at all (not JSON, or no ``suspects`` list)."""


@dataclass
class ParsedReply:
    """The usable part of one reply: suspects with known, unique ids, and what was dropped."""

    suspects: list[Suspect]
    dropped: dict[str, int]


def parse_reply(text: str, known_ids: set[str], max_suspects: int = MAX_SUSPECTS) -> ParsedReply:
    """Parse and validate one reply.

    Parameters
    ----------
    text : str
        Raw reply.
    known_ids : set of str
        Ids shown in the prompt.
    max_suspects : int, default MAX_SUSPECTS (8)
        Suspects kept; later valid items are ignored.

    Returns
    -------
    ParsedReply
        Valid suspects in reply order (at most ``max_suspects``), and counts of dropped items
        under ``invalid``, ``unknown_id`` and ``duplicate``.

    Raises
    ------
    ReplyError
        When the text is not a JSON object holding a ``suspects`` list, or when every item in
        the list fails the schema (the first error is in the message, to be fed back).
    """
    try:  # a raw control character inside a string is let through: llama.cpp's JSON grammar does not stop a
        data = json.loads(text, strict=False)  # SentencePiece vocabulary (Gemma's) from writing a newline there
    except json.JSONDecodeError as error:
        raise ReplyError(f"the reply is not valid JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(data, dict) or not isinstance(data.get("suspects"), list):
        raise ReplyError('the reply must be a JSON object {"suspects": [...]}')
    kept, seen, first_error = [], set(), None
    dropped = {"invalid": 0, "unknown_id": 0, "duplicate": 0}
    for item in data["suspects"]:
        try:
            suspect = Suspect.model_validate(item)
        except ValidationError as error:
            dropped["invalid"] += 1
            first_error = first_error or error.errors()[0]
            continue
        suspect_id = suspect.id.strip()
        if suspect_id not in known_ids:
            dropped["unknown_id"] += 1
        elif suspect_id in seen:
            dropped["duplicate"] += 1
        elif len(kept) < max_suspects:
            seen.add(suspect_id)
            kept.append(suspect.model_copy(update={"id": suspect_id}))
    if first_error and dropped["invalid"] == len(data["suspects"]):
        where = ".".join(str(part) for part in first_error["loc"])
        raise ReplyError(f"all {len(data['suspects'])} suspects are invalid, e.g. {where}: {first_error['msg']}")
    return ParsedReply(kept, dropped)


def suspect_schema(ids: list[str], max_suspects: int = MAX_SUSPECTS) -> dict:
    """The response schema with ``id`` restricted to the ids shown (an ``enum``), so constrained
    decoding can only produce existing ids, at most ``max_suspects`` items (``maxItems``), and ``reason`` asked to be at most ``REASON_CHARS`` long (each
    character is about a token the model must generate; validation still accepts the 60 of :class:`Suspect`).
    Validation still checks every reply."""
    schema = response_schema(SuspectList)
    item = schema["properties"]["suspects"]["items"]["properties"]
    item["id"] = {"type": "string", "enum": list(ids)}
    item["reason"]["maxLength"] = REASON_CHARS
    schema["properties"]["suspects"]["maxItems"] = max_suspects
    return schema


def ask(backend: Backend, messages: Messages, known_ids: list[str], report: LLMReport,
        retries: int = 2, max_suspects: int = MAX_SUSPECTS) -> list[Suspect]:
    """One question to the model, retried with the error fed back while the reply is unusable.

    Parameters
    ----------
    backend : Backend
    messages : list of dict
        Chat messages (system, user).
    known_ids : list of str
        Ids shown in the prompt.
    report : LLMReport
        Updated in place with calls, usage, seconds, dropped counts, replies and failures.
    retries : int, default 2
        Extra attempts after an unusable reply.
    max_suspects : int, default MAX_SUSPECTS (8)
        Most suspects asked for (the schema's ``maxItems``) and kept.

    Returns
    -------
    list of Suspect
        Empty when every attempt failed (the failure is in ``report.failures``).
    """
    schema = suspect_schema(known_ids, max_suspects)
    conversation = list(messages)
    error = None
    for _ in range(retries + 1):
        reply = backend.complete(conversation, schema)
        report.calls += 1
        report.transport_retries += reply.retries
        report.cached += reply.cached
        report.prompt_tokens += reply.prompt_tokens
        report.completion_tokens += reply.completion_tokens
        report.seconds += reply.seconds
        report.replies.append(reply.text)
        try:
            parsed = parse_reply(reply.text, set(known_ids), max_suspects)
        except ReplyError as exc:
            error = exc
            discard(reply)  # never replayed from the cache
            conversation += [{"role": "assistant", "content": reply.text},
                             {"role": "user", "content": f"Your reply could not be used: {exc}. "
                                                         "Answer again with only the JSON object."}]
            continue
        for reason, count in parsed.dropped.items():
            report.dropped[reason] += count
        return parsed.suspects
    report.failures.append(f"no usable reply after {retries + 1} attempts: {error}")
    return []


def ask_view(backend: Backend, view: View, messages_for, report: LLMReport, max_prompt_tokens: int = 6000,
             retries: int = 2, max_suspects: int = MAX_SUSPECTS) -> list[tuple[int, Suspect]]:
    """Show a view to the model, tile by tile within the token budget, and collect validated suspects.

    Parameters
    ----------
    backend : Backend
    view : View
    messages_for : callable
        ``messages_for(rows, tile, n_tiles) -> messages`` renders the prompt showing those view rows.
    report : LLMReport
        Updated in place.
    max_prompt_tokens : int, default 6000
        Budget per request, counted with the backend's tokenizer; the view is split into spatial tiles
        to honour it.
    retries : int, default 2
    max_suspects : int, default MAX_SUSPECTS (8)
        Suspects asked for per tile, and kept over all tiles (the most confident).

    Returns
    -------
    list of (int, Suspect)
        Row of the view and the suspect, highest confidence first, unique ids, at most ``max_suspects``.

    Raises
    ------
    ValueError
        If even a one-point prompt exceeds ``max_prompt_tokens``.
    """
    tiles = split_into_tiles(view, lambda rows: backend.count_tokens(messages_for(rows, 1, 2)), max_prompt_tokens)
    report.tiles += len(tiles)
    row_of = {pid: row for row, pid in enumerate(view.ids)}
    found: dict[str, tuple[int, Suspect]] = {}
    for number, rows in enumerate(tiles, start=1):
        known = [view.ids[r] for r in rows]
        for suspect in ask(backend, messages_for(rows, number, len(tiles)), known, report, retries, max_suspects):
            found.setdefault(suspect.id, (row_of[suspect.id], suspect))
    return sorted(found.values(), key=lambda item: (-item[1].confidence, item[0]))[:max_suspects]


def prompt_messages(prompt: PromptTemplate, stage: str, view: View, n_total: int, guidance: str = "",
                    max_suspects: int = MAX_SUSPECTS, **extra):
    """A ``messages_for(rows, tile, n_tiles)`` for :func:`ask_view`: the prompt's ``stage`` template
    ("user" or "zoom") showing those rows of ``view``; ``guidance`` is the user's text on what is normal
    and what a defect looks like (``--guidance``); ``max_suspects`` the most the model may name; ``extra``
    fills the zoom template's variables."""
    def messages_for(rows: np.ndarray, tile: int = 1, n_tiles: int = 1) -> Messages:
        return prompt.render(stage, points=view.text(rows), legend=view.legend, n_shown=len(rows), n_total=n_total,
                             tile=tile, n_tiles=n_tiles, max_suspects=max_suspects, guidance=guidance, **extra)
    return messages_for


def run_agent(backend: Backend, prompt: PromptTemplate, context: CloudContext, view: View, rounds: int = 1,
              max_prompt_tokens: int = 6000, retries: int = 2, seed: int = 0,
              guidance: str = "", max_suspects: int = MAX_SUSPECTS) -> tuple[list[tuple[int, Suspect]], LLMReport]:
    """The agent: an overview round, then closer rounds around what it picked.

    Round 1 shows the overview (the points, or for the ``regions`` format the regions). Every later
    round shows a denser verbalization of the neighbourhood of the current picks (as many points as
    the overview had; picked regions are shown whole) with the prompt's zoom template; the model
    answers with the same schema, so naming a suspect again confirms it, leaving it out drops it, and
    naming another point adds it. A round whose replies are all unusable keeps the previous suspects.
    The ``regions`` format always has at least 2 rounds (regions, then points).

    Parameters
    ----------
    backend : Backend
    prompt : PromptTemplate
    context : CloudContext
        The full cloud, its k-d tree and the geometry of its samples.
    view : View
        The verbalized sample (``xyz`` or ``xyz+geom``; :func:`agent3d.verbalize.shown_view`).
    rounds : int, default 1
    max_prompt_tokens, retries, seed
        As in :func:`ask_view`; ``seed`` thins the zoomed neighbourhoods.
    guidance : str, default ""
        Text guidance shown by every template (``--guidance``).
    max_suspects : int, default MAX_SUSPECTS (8)
        Most suspects per round (``--max-suspects``).

    Returns
    -------
    suspects : list of (int, Suspect)
        Full-cloud index and suspect, highest confidence first.
    report : LLMReport
        Totals over all rounds, and per round (``report.rounds``) its calls, tokens, seconds, replies
        and final ids.
    """
    report, points = LLMReport(), context.points
    spacing = view.spacing(points)
    overview, members = overview_of(context, view, prompt.format)
    found = _round(report, 1, lambda: ask_view(
        backend, overview, prompt_messages(prompt, "user", overview, len(points), guidance, max_suspects),
        report, max_prompt_tokens, retries, max_suspects), overview)
    if members is not None:  # the picked regions, shown whole in round 2
        picked = [overview.ids[row] for row, _ in found]
        centres = np.concatenate([view.indices[members[row]] for row, _ in found] or [np.empty(0, np.int64)])
        current, radius, focus = [], spacing, f"inside the regions you picked ({', '.join(picked)})"
    else:
        current = [(int(view.indices[row]), s) for row, s in found]
        centres, radius, focus = np.array([i for i, _ in current], dtype=np.int64), 2 * spacing, "around your suspects"
    n_rounds = max(rounds, 2) if members is not None else rounds
    for number in range(2, n_rounds + 1):
        if len(centres) == 0:
            break
        zoomed = zoomed_view(context, centres, radius, len(view.lines), view.format, seed)
        position = {int(i): zoomed.ids[row] for row, i in enumerate(zoomed.indices)}
        previous = [position[i] for i, _ in current if i in position]
        failures_before = len(report.failures)
        found = _round(report, number, lambda: ask_view(
            backend, zoomed, prompt_messages(prompt, "zoom", zoomed, len(points), guidance, max_suspects, round=number,
                                             n_rounds=n_rounds, focus=focus, previous=previous),
            report, max_prompt_tokens, retries, max_suspects), zoomed)
        if found or len(report.failures) == failures_before:
            current = [(int(zoomed.indices[row]), s) for row, s in found]
        centres = np.array([i for i, _ in current], dtype=np.int64)
        radius, focus = 2 * spacing, "around your suspects"
    return current, report


def _round(report: LLMReport, number: int, ask_round, view: View) -> list[tuple[int, Suspect]]:
    """Run one round and record its share of calls, tokens, seconds and replies in ``report.rounds``."""
    before = (report.calls, report.prompt_tokens, report.completion_tokens, report.seconds, len(report.replies))
    found = ask_round()
    report.rounds.append({"round": number, "calls": report.calls - before[0],
                          "prompt_tokens": report.prompt_tokens - before[1],
                          "completion_tokens": report.completion_tokens - before[2],
                          "seconds": round(report.seconds - before[3], 3), "shown": len(view.lines),
                          "replies": report.replies[before[4]:], "suspects": [s.id for _, s in found]})
    return found
