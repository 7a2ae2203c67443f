"""What every layer shares and that imports nothing of the package: the error of bad input, the names the
configuration accepts, and the redaction of credentials in URLs. Stages import their names from here, so reading the
configuration (the CLI's help, completion, ``--version``) loads none of their numerical libraries.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

GATINGS = ("llm", "learned", "saliency", "coarse", "cascade", "random", "all")
GROWTHS = ("fixed", "adaptive")  # agent3d.growth
SAMPLERS = ("fps", "voxel")
SCORERS = ("auto", "self-reference", "memory-bank", "registration", "fused")
OBJECT_SCORES = ("max", "topk-mean")
BACKENDS = ("llama-cpp", "openai", "transformers")
DEVICES = ("auto", "cpu", "cuda")
EMBEDDED_MODELS = ("smollm2-135m", "gemma-3-270m")  # --model names of the embedded GGUFs (agent3d.llm.embedded)


class InputError(ValueError):
    """A file that cannot be used, with the file and the reason in one line.

    Parameters
    ----------
    path : str or Path
        The offending file.
    reason : str
        What is wrong with it, in a few words.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # crosses process boundaries (joblib, dask) intact
        return (type(self), (self.path, self.reason))


def redact_url(url: str | None) -> str | None:
    """``url`` with any user name and password replaced by ``***`` (for records, logs and messages).

    >>> redact_url("http://user:secret@host:8000/v1")
    'http://***@host:8000/v1'
    """
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
