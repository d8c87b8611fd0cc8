"""``python -m dbp`` is the ``dbp`` command."""

from dbp.cli import app

if __name__ == "__main__":  # worker processes of the import re-import this module under another name
    app(prog_name="dbp")
