"""The notebooks in notebooks/ run top to bottom and are stored without outputs.

Each notebook is executed with nbclient in a kernel started from *this* interpreter
(a kernel spec written to a temporary folder whose argv is ``sys.executable``, so a
``python3`` kernel registered elsewhere on the machine is never picked up), with the
working folder ``notebooks/`` as in Jupyter. The notebooks write their outputs under
``$CIRCLES_NOTEBOOK_OUT`` (a temporary folder here; the repository root otherwise) and
never into ``notebooks/``. The Liechtenstein notebook prints a skip message and runs
nothing heavy when ``../shared/data`` is absent.
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT_S = 600
#: The study each notebook writes (under $CIRCLES_NOTEBOOK_OUT).
STUDIES = {
    "01_quickstart.ipynb": "helsinki_default",
    "02_liechtenstein_communities.ipynb": "liechtenstein",
    "03_new_facilities.ipynb": "helsinki_new_canteens",
    "05_siting_liechtenstein.ipynb": "liechtenstein_canteens",
}
EXPECTED = tuple(STUDIES)
#: Private modules a notebook may import: the error types live in circles._errors (the
#: package re-exports nothing), and a notebook may catch them.
ALLOWED_PRIVATE = {"circles._errors"}
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))

#: Appended to the in-memory copy of each notebook (never to the file): proves the
#: kernel ran this interpreter.
PROBE = "import sys\nprint('PROBE', sys.prefix, sys.executable)"


#: A script or stylesheet loaded from the web (also inside an ``<iframe srcdoc>``, once
#: unescaped): ``<script src="https://…">``, ``<link href="//…">``, ``@import url(http…)``.
_REMOTE_ASSET = re.compile(
    r"""<script\b[^>]*\bsrc\s*=\s*\\?["']?\s*(?:https?:)?//[^"'\s>]*"""
    r"""|<link\b[^>]*\bhref\s*=\s*\\?["']?\s*(?:https?:)?//[^"'\s>]*"""
    r"""|@import\s+(?:url\(\s*)?["']?\s*(?:https?:)?//[^"'\s)]*""",
    re.IGNORECASE,
)


def remote_assets(page: str) -> list[str]:
    """The web scripts and stylesheets ``page`` (notebook output HTML) would load."""
    return _REMOTE_ASSET.findall(html.unescape(page))


def test_remote_assets_are_found():
    cdn = '<script src="https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js"></script>'
    assert remote_assets(cdn)
    assert remote_assets(f'<iframe srcdoc="{html.escape(cdn)}"></iframe>')
    assert remote_assets('<link rel="stylesheet" href="//cdn.example.org/a.css"/>')
    assert remote_assets("<style>@import url('https://fonts.example.org/x.css');</style>")
    assert not remote_assets('<script>var L = {};</script><a href="https://www.openstreetmap.org">')
    assert not remote_assets('<img src="data:image/png;base64,AAAA">')


def test_expected_notebooks_exist():
    names = [p.name for p in ALL]
    assert [n for n in names if n in EXPECTED] == list(EXPECTED), names


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "a notebook without code"
    for i, cell in enumerate(code):
        assert cell["outputs"] == [], f"code cell {i} of {path.name} has outputs"
        assert cell["execution_count"] is None, f"code cell {i} of {path.name} was executed"
    for cell in nb["cells"]:
        assert "attachments" not in cell or not cell["attachments"]


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_notebook_uses_public_api_only(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    source = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    imported = re.findall(
        r"^\s*(?:from|import)\s+(circles[\w.]*)(?:\s+import\s+(.+))?", source, re.M
    )
    assert imported, "the notebook does not use circles"
    for module, names in imported:
        if module not in ALLOWED_PRIVATE:
            assert not any(part.startswith("_") for part in module.split(".")), module
        assert not re.search(r"(?:^|[\s,(])_\w", names), f"private name imported: {names}"
    assert not re.search(r"\b(?:maps|pipeline|config|facilities)\._\w", source)


def _kernel_manager(tmp_path: Path):
    """A kernel manager whose ``python3`` kernel is this interpreter (spec in tmp_path)."""
    pytest.importorskip("ipykernel", reason="pip install ipykernel to run the notebooks")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "circles test kernel",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    assert ksm.get_kernel_spec("python3").argv[0] == sys.executable
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ksm)


def _execute(path: Path, tmp_path: Path) -> tuple[Any, str]:
    """Run a notebook (cwd notebooks/) in this interpreter; return it and its text output.

    Raises nbclient's ``CellExecutionError`` on the first cell error.
    """
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,  # any cell error raises CellExecutionError
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(cleanup_kc=True)  # shut the kernel down and close its sockets
    probe = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert probe.split() == ["PROBE", sys.prefix, sys.executable], "not this interpreter"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    return nb, text


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_notebook_executes(path, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("CIRCLES_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("CIRCLES_OFFLINE", "1")  # tests never touch the internet
    before = {p.name for p in NOTEBOOKS.iterdir()}
    nb, text = _execute(path, tmp_path)
    # nothing written next to the notebooks (other notebooks may appear meanwhile)
    new = {p.name for p in NOTEBOOKS.iterdir()} - before
    assert not {n for n in new if not n.endswith(".ipynb")}, new
    if path.name not in STUDIES:
        return  # another author's notebook: it ran without error, that is all we check
    if path.name.startswith(("02", "05")) and "SKIPPED" in text:
        assert not (out / "maps").exists()
        return
    study = STUDIES[path.name]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert f"maps/{study}/coverage.html" in written, written
    assert f"data/processed/{study}/circles.gpkg" in written, written
    mine = (f"maps/{study}/", f"data/processed/{study}/")
    assert all(w.startswith(mine) for w in written), "only this study's outputs"
    pages = [
        o["data"]["text/html"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/html" in o.get("data", {})
    ]
    assert [p for p in pages if "leaflet" in p.lower()], "no inline map was displayed"
    for page in pages:  # offline: no script or stylesheet from the web (a CDN's Leaflet)
        assert not remote_assets(page), (path.name, remote_assets(page)[:3])
    if path.name.startswith("05"):
        assert "scenario coverage == predicted coverage" in text
        assert f"data/processed/{study}/compare/three_canteens/compare.csv" in written
        assert f"data/processed/{study}/suggestions/elderly_canteen_3.csv" in written
    if path.name.startswith("03"):
        # the planner's file: two canteens used, the swapped row rejected with its reason
        assert "outside study area" in text
        assert "Illustrative canteen" in text


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["02_liechtenstein_communities.ipynb", "05_siting_liechtenstein.ipynb"]
)
def test_liechtenstein_notebook_skips_cleanly_without_data(name, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("CIRCLES_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("CIRCLES_SHARED_DATA", str(tmp_path / "no_shared_data"))
    _, text = _execute(NOTEBOOKS / name, tmp_path)
    assert "SKIPPED: the Liechtenstein extract" in text
    assert str(tmp_path / "no_shared_data") in text
    assert not list(out.iterdir()), "nothing is written when the data is absent"
