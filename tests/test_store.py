"""The run folder's records: one typed model writes and reads them; records of 0.2 still read; a torn, foreign or
mistyped line is not a record."""

from __future__ import annotations

import json

import numpy as np

from agent3d.evaluation.store import SampleRecord, done_keys, read_lines

OLD = {"key": "c/s0/saliency/-", "class": "c", "sample": "s0", "gating": "saliency", "prompt": None, "label": 1,
       "object_score": 0.5, "n_points": 100, "n_scored": 10, "regions": 2, "regions_hit": 1, "tokens_prompt": 0,
       "tokens_completion": 0, "llm_seconds": 0.0, "seconds": 0.1, "llm_calls": 0, "llm_retries": 0,
       "llm_cached": 0, "llm_failures": 0, "dropped": None, "suspects": [], "seeds": [3, 4], "scorer": "fused",
       "scores_file": "scores/c__s0__saliency__-.npz", "from_a_later_version": {"kept": True}}


def test_records_of_0_2_read_as_written_and_bad_lines_are_not_records(tmp_path):
    (tmp_path / "scores").mkdir()
    np.savez(tmp_path / OLD["scores_file"], scores=np.zeros(3), labels=np.zeros(3), regions=np.zeros(3))
    failed = {"key": "c/s1/saliency/-", "class": "c", "sample": "s1", "gating": "saliency", "prompt": None,
              "failed": "s1.txt: no such file"}
    lines = [json.dumps(OLD), json.dumps(failed), json.dumps({**OLD, "key": 5}),
             json.dumps({k: v for k, v in OLD.items() if k != "object_score"}), "[1, 2]", '{"key": "c/s2/sal']
    (tmp_path / "samples.jsonl").write_text("\n".join(lines))
    records = read_lines(tmp_path)
    assert records == [OLD, failed]
    assert done_keys(tmp_path) == {OLD["key"], failed["key"]}
    record = SampleRecord.model_validate(OLD)
    assert record.class_name == "c" and record.to_dict() == OLD
