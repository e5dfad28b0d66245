"""Finds the WSGI callable that an APP argument names (embedded in evserve)."""

import ast
import importlib
import importlib.util
import os
import sys


class LoadError(Exception):
    """The APP argument does not name a usable callable."""


def _import_file(path):
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise LoadError(f"no such file: {path}")
    directory = os.path.dirname(full)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = os.path.splitext(os.path.basename(full))[0]
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _literal(node, text):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise LoadError(
            f"'{text}': factory arguments must be literals (strings, numbers, "
            "True/False/None, lists, dicts)"
        ) from None


def load(kind, source, expr, text):
    module = _import_file(source) if kind == "file" else importlib.import_module(source)
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise LoadError(f"'{expr}' is not a name or a factory call") from None
    call = None
    if isinstance(node, ast.Call):
        call, node = node, node.func
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise LoadError(f"'{expr}' is not a name or a factory call")
    names.append(node.id)
    names.reverse()
    obj = module
    for i, name in enumerate(names):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            where = ".".join(names[:i]) or module.__name__
            raise LoadError(
                f"'{where}' has no attribute '{name}' (APP is '{text}')"
            ) from None
    if call is not None:
        args = [_literal(a, text) for a in call.args]
        kwargs = {}
        for kw in call.keywords:
            if kw.arg is None:
                raise LoadError(f"'{text}': **kwargs are not allowed in the factory call")
            kwargs[kw.arg] = _literal(kw.value, text)
        obj = obj(*args, **kwargs)
    if not callable(obj):
        raise LoadError(
            f"'{text}' is not callable: it is a {type(obj).__name__} object"
        )
    return obj


def source_files():
    """Files of the imported modules outside the standard library and the installed
    packages: the app's own code, which --reload watches."""
    import site
    import sysconfig

    roots = set()
    for scheme_vars in (None, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars) if scheme_vars else sysconfig.get_paths()
        roots.update(paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib"))
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:
        pass
    roots = tuple(os.path.join(os.path.abspath(r), "") for r in roots if r)
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not os.path.isabs(path):
            continue
        if not path.startswith(roots) and os.path.isfile(path):
            found.add(path)
    return sorted(found)
