"""Tuning a language model to read verbalized clouds: examples (what detect shows, the reply it should give),
train (peft prompt tuning or LoRA), run (``agent3d tune`` end to end). ``adapters/`` holds the adapter shipped
with the package, if any (``--adapter embedded``)."""
