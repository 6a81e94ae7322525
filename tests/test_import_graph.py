"""The layers of vitdense import downwards only: the model side (models, checkpoint, engine, datasets, registry,
errors) never imports the tools' side (runtime, analysis, transfer, inference, zoo, cli), not even inside a
function, and errors.py imports nothing from vitdense."""
import ast
import os

import pytest

from tests.conftest import REPO

PACKAGE = os.path.join(REPO, 'vitdense')
LOWER = ['models', 'checkpoint', 'engine', 'datasets', 'registry.py', 'errors.py']
UPPER = ('vitdense.runtime', 'vitdense.analysis', 'vitdense.transfer', 'vitdense.inference', 'vitdense.zoo',
         'vitdense.cli', 'vitdense.apis')


def modules(part):
    path = os.path.join(PACKAGE, part)
    if path.endswith('.py'):
        return [path]
    return sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files if f.endswith('.py'))


def imported(path):
    """Every module a file imports, anywhere in it, relative imports resolved."""
    package = os.path.relpath(os.path.dirname(path), REPO).replace(os.sep, '.')
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit('.', node.level - 1)[0] if node.level else ''
            module = '.'.join(p for p in (base, node.module) if p)
            found.add(module)
            found.update(f'{module}.{alias.name}' for alias in node.names)
    return found


@pytest.mark.parametrize('part', LOWER)
def test_the_model_side_never_imports_the_tools_side(part):
    upward = {os.path.relpath(path, REPO): sorted(m for m in imported(path) if m.startswith(UPPER))
              for path in modules(part)}
    assert not {k: v for k, v in upward.items() if v}


def test_errors_sit_at_the_bottom_of_the_import_graph():
    assert not [m for m in imported(os.path.join(PACKAGE, 'errors.py')) if m.split('.')[0] == 'vitdense']
