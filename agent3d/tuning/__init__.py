"""Tuning a language model to point at defects. Generative: examples (what detect shows, the reply it should give),
train (peft prompt tuning or LoRA), run (``agent3d tune --method lora|prompt``). Reading: lines (every shown line
labeled, the frozen model's states cached), heads (fit and cross-validate), probes (``agent3d tune --method
head|features``). ``adapters/`` holds the PEFT adapter shipped with the package, if any; heads and the learned
baseline ship in ``agent3d/shipped/``."""


def package_versions(*names: str) -> dict[str, str]:
    """agent3d's version and those of the distributions ``names`` that are installed, for a tuning record."""
    from importlib import metadata

    from agent3d import __version__

    found = {"agent3d": __version__}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
