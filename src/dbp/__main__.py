"""``python -m dbp`` is the ``dbp`` command."""

from dbp.cli import app

app(prog_name="dbp")
