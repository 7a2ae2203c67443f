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
from agent3d.llm.base import Backend, Messages, response_schema
from agent3d.prompts import PromptTemplate
from agent3d.verbalize import View, split_into_tiles

MAX_SUSPECTS = 8


class ReplyError(ValueError):
    """A reply that cannot be used at all (not JSON, or no ``suspects`` list)."""


@dataclass
class ParsedReply:
    """The usable part of one reply: suspects with known, unique ids, and what was dropped."""

    suspects: list[Suspect]
    dropped: dict[str, int]


def parse_reply(text: str, known_ids: set[str]) -> ParsedReply:
    """Parse and validate one reply.

    Parameters
    ----------
    text : str
        Raw reply.
    known_ids : set of str
        Ids shown in the prompt.

    Returns
    -------
    ParsedReply
        Valid suspects in reply order (at most ``MAX_SUSPECTS``), and counts of dropped items
        under ``invalid``, ``unknown_id`` and ``duplicate``.

    Raises
    ------
    ReplyError
        When the text is not a JSON object holding a ``suspects`` list, or when every item in
        the list fails the schema (the first error is in the message, to be fed back).
    """
    try:
        data = json.loads(text)
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
        elif len(kept) < MAX_SUSPECTS:
            seen.add(suspect_id)
            kept.append(suspect.model_copy(update={"id": suspect_id}))
    if first_error and dropped["invalid"] == len(data["suspects"]):
        where = ".".join(str(part) for part in first_error["loc"])
        raise ReplyError(f"all {len(data['suspects'])} suspects are invalid, e.g. {where}: {first_error['msg']}")
    return ParsedReply(kept, dropped)


def suspect_schema(ids: list[str]) -> dict:
    """The response schema with ``id`` restricted to the ids shown (an ``enum``), so constrained
    decoding can only produce existing ids. Validation still checks every reply."""
    schema = response_schema(SuspectList)
    schema["properties"]["suspects"]["items"]["properties"]["id"] = {"type": "string", "enum": list(ids)}
    return schema


def ask(backend: Backend, messages: Messages, known_ids: list[str], report: LLMReport,
        retries: int = 2) -> list[Suspect]:
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

    Returns
    -------
    list of Suspect
        Empty when every attempt failed (the failure is in ``report.failures``).
    """
    schema = suspect_schema(known_ids)
    conversation = list(messages)
    error = None
    for _ in range(retries + 1):
        reply = backend.complete(conversation, schema)
        report.calls += 1
        report.prompt_tokens += reply.prompt_tokens
        report.completion_tokens += reply.completion_tokens
        report.seconds += reply.seconds
        report.replies.append(reply.text)
        try:
            parsed = parse_reply(reply.text, set(known_ids))
        except ReplyError as exc:
            error = exc
            conversation += [{"role": "assistant", "content": reply.text},
                             {"role": "user", "content": f"Your reply could not be used: {exc}. "
                                                         "Answer again with only the JSON object."}]
            continue
        for reason, count in parsed.dropped.items():
            report.dropped[reason] += count
        return parsed.suspects
    report.failures.append(f"no usable reply after {retries + 1} attempts: {error}")
    return []


def find_suspects(backend: Backend, prompt: PromptTemplate, view: View, n_total: int,
                  max_prompt_tokens: int = 6000, retries: int = 2) -> tuple[list[tuple[int, Suspect]], LLMReport]:
    """Show the view to the model, tile by tile within the token budget, and collect suspects.

    Parameters
    ----------
    backend : Backend
    prompt : PromptTemplate
    view : View
        The verbalized sample.
    n_total : int
        Points in the full cloud (told to the model).
    max_prompt_tokens : int, default 6000
        Budget per request, counted with the backend's tokenizer; the view is split into spatial
        tiles to honour it.
    retries : int, default 2

    Returns
    -------
    suspects : list of (int, Suspect)
        Row of the view and the suspect, highest confidence first, unique ids.
    report : LLMReport

    Raises
    ------
    ValueError
        If even a one-point prompt exceeds ``max_prompt_tokens``.
    """
    def messages_for(rows: np.ndarray, tile: int = 1, n_tiles: int = 1) -> Messages:
        return prompt.render(points=view.text(rows), legend=view.legend, n_shown=len(rows), n_total=n_total,
                             tile=tile, n_tiles=n_tiles, max_suspects=MAX_SUSPECTS)

    tiles = split_into_tiles(view, lambda rows: backend.count_tokens(messages_for(rows, 1, 2)),
                             max_prompt_tokens)
    report = LLMReport(tiles=len(tiles))
    row_of = {pid: row for row, pid in enumerate(view.ids)}
    found: dict[str, tuple[int, Suspect]] = {}
    for number, rows in enumerate(tiles, start=1):
        known = [view.ids[r] for r in rows]
        for suspect in ask(backend, messages_for(rows, number, len(tiles)), known, report, retries):
            found.setdefault(suspect.id, (row_of[suspect.id], suspect))
    ranked = sorted(found.values(), key=lambda item: (-item[1].confidence, item[0]))
    return ranked, report
