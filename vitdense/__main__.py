"""``python -m vitdense COMMAND ...``: the ``vitdense`` command run by this interpreter."""
from vitdense.cli import main

main()
