"""``python -m agent3d``: the same as the ``agent3d`` command."""

from agent3d.cli import app

app(prog_name="agent3d")
