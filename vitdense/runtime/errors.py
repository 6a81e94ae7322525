"""One line, ``error: ...``, and exit status 2 for what a user can fix; a traceback for everything else.

Decided by the exception's type, never by the file it was raised in: a :class:`vitdense.errors.UserError` (its
:class:`~vitdense.errors.ConfigError`, :class:`~vitdense.errors.CheckpointError`, :class:`~vitdense.errors.DataError`,
:class:`~vitdense.errors.ImageError` ...), and from the libraries underneath: a type name no registry knows, a key
of a config that the class mmengine's builder builds from it does not take, a missing file, an image mmcv cannot
decode. Any other exception, a ``ValueError`` raised inside vitdense included, is a bug and keeps its traceback.
"""
import difflib
import inspect
import re
import sys
from typing import Callable, List, Optional

from vitdense.errors import UserError

_REGISTRY_MISS = re.compile(r"^(\S+) is not in the (\S+?)::(.+?) registry")
_WORKER_WRAPPED = re.compile(r'^Caught \w+ in DataLoader worker process \d+\.')
_UNKNOWN_ARGUMENT = re.compile(r"^([\w.]+)\.__init__\(\) got an unexpected keyword argument '(\w+)'$")


def _registry_names(scope: str, name: str) -> List[str]:
    """Every type name reachable from the ``scope`` registry called ``name``, scoped names for the others."""
    import mmengine.registry as roots
    for obj in vars(roots).values():
        if isinstance(obj, roots.Registry) and obj.parent is None and obj.name == name:
            root = obj
            break
    else:
        return []
    found, stack = [], [root]
    while stack:
        reg = stack.pop()
        stack.extend(reg._children.values())
        local = reg.scope in (scope, 'mmengine')
        found.extend(k if local else f'{reg.scope}.{k}' for k in reg._module_dict)
    return sorted(set(found))


def _unknown_type_message(err: KeyError) -> Optional[str]:
    text = err.args[0] if err.args and isinstance(err.args[0], str) else ''
    if 'is not a registered vitdense' in text:
        return text
    found = _REGISTRY_MISS.match(text)
    if not found:
        return None
    name, scope, registry = found.groups()
    close = difflib.get_close_matches(name, _registry_names(scope, registry), n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else '; check the spelling and custom_imports'
    return f"unknown type '{name}' in the config: no such {registry} in {scope}'s registry{hint}"


def _arguments(cls: type) -> List[str]:
    """The keyword arguments ``cls(...)`` takes, following ``**kwargs`` handed to the parent constructors."""
    names = []
    for klass in cls.__mro__:
        if '__init__' not in vars(klass) or klass is object:
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names += [p.name for p in params if p.name != 'self' and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys(names))


def _unknown_argument_message(err: TypeError) -> Optional[str]:
    """A config key the class it configures does not take: the TypeError of the constructor call mmengine's
    ``build_from_cfg`` makes with the config's keys, for a key of those refused by that class or by a parent it
    hands its ``**kwargs`` to. Any other TypeError, e.g. a bad call inside a constructor, is a bug."""
    from mmengine.registry.build_functions import build_from_cfg
    unknown = _UNKNOWN_ARGUMENT.match(str(err.args[0]) if err.args else '')
    build, tb = None, err.__traceback__
    while tb is not None:  # the innermost config build the error passed through
        if tb.tb_frame.f_code is build_from_cfg.__code__:
            build = tb.tb_frame
        tb = tb.tb_next
    if unknown is None or build is None:
        return None
    cls, args = build.f_locals.get('obj_cls'), build.f_locals.get('args') or {}
    receiver, key = unknown.group(1).rsplit('.', 1)[-1], unknown.group(2)
    if not isinstance(cls, type) or key not in args or receiver not in [k.__name__ for k in cls.__mro__]:
        return None
    accepted = _arguments(cls)
    close = difflib.get_close_matches(key, accepted, n=3, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else f"it takes: {', '.join(accepted)}"
    return f"unknown argument '{key}' for {cls.__name__} in the config; {hint}"


def _original_message(err: BaseException) -> str:
    """The message itself, also when a DataLoader worker wrapped it together with the worker's traceback."""
    text = str(err.args[0]) if err.args else str(err)
    if _WORKER_WRAPPED.match(text):
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = last.split(': ', 1)[1] if ': ' in last else last
    return text


def describe_error(err: BaseException) -> Optional[str]:
    """One line for the errors a user can fix; None for everything else (bugs keep their traceback)."""
    if isinstance(err, UserError):
        return _original_message(err)
    if isinstance(err, KeyError):
        return _unknown_type_message(err)
    if isinstance(err, TypeError):
        return _unknown_argument_message(err)
    text = _original_message(err)
    if isinstance(err, AssertionError) and text.startswith('failed to load image:'):
        path = text.split(':', 1)[1].strip()
        return f'cannot decode image {path}: the file is truncated, corrupt or not an image; replace or remove it'
    if isinstance(err, FileNotFoundError):
        return f'file not found: {err.filename}' if err.filename else text
    return None


def run_tool(main: Callable[[], None]) -> None:
    """Run a tool's ``main``: user-fixable errors become ``error: <one line>`` on stderr and exit status 2."""
    try:
        main()
    except Exception as err:  # noqa: BLE001  (re-raised unless it is a known user error)
        line = describe_error(err)
        if line is None:
            raise
        print(f"error: {' '.join(line.split())}", file=sys.stderr)
        sys.exit(2)
