"""Rendering tables: the HTML page in headless Chromium (loads, fits or scrolls), the terminal table, the text of
the formats, and the one-way imports of the table modules. The golden files are checked in ``test_tables.py``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_tables import REPO, _golden_record, write_board

from harness.leaderboard import to_markdown
from harness.tables import main_tables


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_board(tmp_path_factory.mktemp("lb"))


def test_html_self_contained(board_dir: Path) -> None:
    page = (board_dir / "index.html").read_text()
    assert "<table" in page and "data:image/png;base64," in page
    for bad in ('src="http', "href=\"http", "<script", "<link"):
        assert bad not in page


def _chromium() -> str:
    """The chromium binary; a skip with the reason where it is absent, a failure where CI requires it
    (``CPCBENCH_REQUIRE_CHROMIUM=1``, set by ``.ci/run`` after installing it)."""
    exe = shutil.which("chromium")
    if exe is None:
        why = "chromium is not installed (apt-get install chromium) - cannot load the page in a browser"
        if os.environ.get("CPCBENCH_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{why}; CPCBENCH_REQUIRE_CHROMIUM=1 (CI) requires the browser test to run")
        pytest.skip(why)
    return exe


def test_html_in_headless_chromium(board_dir: Path, tmp_path: Path) -> None:
    """The page loads in headless Chromium without console errors (DOM dumped) and renders (screenshot: a
    non-blank PNG, copied to ``$CPCBENCH_SCREENSHOT_DIR`` when set)."""
    from PIL import Image

    exe = _chromium()
    page = board_dir / "index.html"
    common = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              f"--user-data-dir={tmp_path / 'profile'}"]
    res = subprocess.run([*common, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert dom.count('<table class="lb">') >= 8
    assert "Body tasks: finetune protocol, 100% of the training set" in dom
    assert "<td>cpc</td>" in dom and "HMR2.0 (ViT-H)" in dom
    errors = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not errors, errors

    shot = tmp_path / "leaderboard.png"
    res = subprocess.run([*common, "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        gray = im.convert("L")
        hist = gray.histogram()
    inked = sum(hist[:200]) / sum(hist)  # pixels clearly darker than the white page: text, table rules, plots
    assert 0.01 < inked < 0.9, f"screenshot looks blank or broken ({inked:.1%} dark pixels)"
    if os.environ.get("CPCBENCH_SCREENSHOT_DIR"):
        out = Path(os.environ["CPCBENCH_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / shot.name)


_MEASURE = """<pre id="fit"></pre><script>
const boxes = [...document.querySelectorAll("table.lb")].map(t => {
  const box = t.parentElement, cs = getComputedStyle(box);
  return {title: box.getAttribute("aria-label"), wide: t.offsetWidth > box.clientWidth,
          scrolls: ["auto", "scroll"].includes(cs.overflowX) && box.scrollWidth > box.clientWidth,
          focusable: box.tabIndex === 0, cue: cs.backgroundImage.includes("gradient"),
          right: box.getBoundingClientRect().right};
});
document.getElementById("fit").textContent = JSON.stringify(
  {tables: boxes, page: document.documentElement.scrollWidth, view: window.innerWidth});
</script>"""


def test_html_wide_tables_scroll_in_their_box(board_dir: Path, tmp_path: Path) -> None:
    """At 1280 px every table fits, or scrolls sideways inside its own box (keyboard-focusable, with an edge
    shadow): the page never overflows and no column is cut off unreachably. Measured in headless Chromium on a
    copy of the page with a measuring script added (the page itself has none)."""
    import html

    exe = _chromium()
    probe = tmp_path / "probe.html"
    probe.write_text((board_dir / "index.html").read_text().replace("</body>", _MEASURE + "</body>"))
    res = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    fit = json.loads(html.unescape(res.stdout.split('<pre id="fit">', 1)[1].split("</pre>", 1)[0]))
    assert fit["page"] <= fit["view"], "the page itself scrolls sideways"
    assert len(fit["tables"]) >= 8
    wide = [t for t in fit["tables"] if t["wide"]]
    assert wide, "no table is wider than 1280 px any more: this test no longer checks the scrolling"
    for t in wide:
        assert t["scrolls"] and t["focusable"] and t["cue"], t
    assert all(t["right"] <= fit["view"] for t in fit["tables"])


def test_terminal_table_keeps_brackets() -> None:
    """Rich markup never eats a unit ("[mm]") or a label ("cpc [no weights]") in the terminal table."""
    from rich.console import Console

    from harness.table_render import to_rich

    rec = _golden_record("synth-body-mesh", "cpc", {"mpjpe": [80.0, 81.0, 79.0]})
    (table,) = main_tables([rec])
    table.rows[0].label = "cpc [no weights]"
    con = Console(width=200, record=True, color_system=None)
    con.print(to_rich(table))
    text = con.export_text()
    assert "MPJPE [mm] ↓" in text and "cpc [no weights]" in text and "80.0 ± 1.0" in text


def test_table_modules_import_one_way() -> None:
    """The table modules form no import circle (deferred and type-checking imports included)."""
    import ast

    mods = ["table_specs", "table_data", "tables", "table_view", "table_render", "html", "plots", "table_curves",
            "leaderboard"]
    graph: dict[str, set[str]] = {}
    for m in mods:
        tree = ast.parse((REPO / "harness" / f"{m}.py").read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        names |= {f"harness.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                  and n.module == "harness" for a in n.names}
        graph[m] = {n.removeprefix("harness.") for n in names if n.startswith("harness.")} & set(mods) - {m}
    order: list[str] = []
    while len(order) < len(mods):
        ready = [m for m in mods if m not in order and graph[m] <= set(order)]
        assert ready, f"import circle among {sorted(set(mods) - set(order))}: {graph}"
        order += ready


def test_one_seed_is_singular() -> None:
    from harness.table_render import to_html, to_latex
    from harness.table_view import table_view

    rec = _golden_record("synth-body-2d", "cpc", {"pck05": [1.0, 2.0, 3.0], "pck10": [1.0, 2.0, 3.0]})
    rec.update(seeds=[0])
    for m in rec["metrics"].values():
        m.update(per_seed=[m["per_seed"][0]], std=None)
    (table,) = main_tables([rec])
    for text in (to_markdown(table), to_latex(table), to_html(table), table_view(table).seeds_note):
        assert "1 seeds" not in text
    assert "1 seed per cell" in to_markdown(table) and "1 seed per cell" in table_view(table).seeds_note
