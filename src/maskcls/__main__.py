"""``python -m maskcls``: the same as the ``maskcls`` command."""

from .cli import app

app(prog_name="maskcls")
