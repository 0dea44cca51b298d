"""The layering rules, checked here as well as by lint-imports in .ci/run: the core (bot.core) never
loads discord, whichever of its modules is imported first, and no function in bot/ is longer than 80
lines."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import bot.core

ROOT = Path(__file__).resolve().parents[1]
CORE_MODULES = sorted(f"bot.core.{info.name}" for info in pkgutil.iter_modules(bot.core.__path__))
MAX_FUNCTION_LINES = 80


def test_the_core_has_the_modules_the_layout_promises():
    assert {"bot.core.errors", "bot.core.jobs", "bot.core.limits", "bot.core.options", "bot.core.store",
            "bot.core.styles", "bot.core.presets", "bot.core.imagecache"} <= set(CORE_MODULES)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_a_core_module_does_not_load_discord(module):
    """In a fresh interpreter (this one has discord loaded by other tests)."""
    check = (f"import sys, {module}; loaded = sorted(m for m in sys.modules if m == 'discord' or m.startswith(('discord.', "
             f"'bot.frontend', 'aiohttp'))); print(loaded); sys.exit(1 if loaded else 0)")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{module} loads {result.stdout.strip()} {result.stderr[-2000:]}"


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_in_bot_is_longer_than_80_lines():
    long = []
    for path in sorted((ROOT / "bot").rglob("*.py")):
        for function in _functions(ast.parse(path.read_text(), str(path))):
            lines = function.end_lineno - function.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(ROOT)}:{function.lineno} {function.name} ({lines} lines)")
    assert not long, long
