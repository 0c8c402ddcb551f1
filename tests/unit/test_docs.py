"""The documentation site covers the package: every analysis, notebook and public name.

``make docs`` (``mkdocs build --strict``) checks that what is listed renders; these tests check
that nothing is left out of the list.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NAV = (ROOT / "mkdocs.yml").read_text()


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("docs_hooks", module)
    spec.loader.exec_module(module)
    return module


ANALYSES = sorted(p.stem for p in (ROOT / "sn_interp" / "analyses").glob("[!_]*.py"))
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("name", ANALYSES)
def test_every_analysis_has_a_page_with_its_config(name):
    page = DOCS / "analyses" / f"{name}.md"
    assert page.exists(), f"docs/analyses/{name}.md is missing"
    text = page.read_text()
    assert f"::: sn_interp.analyses.{name}.Config" in text
    assert f"analyses/{name}.md" in NAV


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_notebook_is_linked_into_the_site(name):
    link = DOCS / "notebooks" / name
    assert link.is_symlink() and link.resolve() == (ROOT / "notebooks" / name).resolve()
    assert f"notebooks/{name}" in NAV


def test_every_page_is_in_the_nav():
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    missing = sorted(p for p in pages if p not in NAV)
    assert not missing, f"pages not in mkdocs.yml nav: {missing}"


def test_api_reference_lists_every_public_name():
    import sn_interp

    text = _hooks().api_markdown()
    blocks = set(re.findall(r"^::: (\S+)$", text, re.M))
    for name in sn_interp._API:
        obj = getattr(sn_interp, name)
        assert f"{obj.__module__}.{obj.__qualname__}" in blocks, name
    for sub in sn_interp._SUBMODULES:
        assert f"sn_interp.{sub}" in blocks, sub
    assert set(sn_interp.__all__) - {"__version__"} <= {*sn_interp._API, *sn_interp._SUBMODULES}


def test_study_tables_document_every_key():
    hooks = _hooks()
    for path in sorted((ROOT / "analyses").glob("*.toml")):
        table = hooks.study_markdown(str(path))   # raises on a key no Config documents
        assert table.count("\n| `") >= 10, path.name
