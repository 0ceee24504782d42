"""Drive Debian's headless Chromium from tests (playwright, never its own browser build).

``open_page(path)`` opens a local HTML file and yields ``(page, errors, requests)``:
``errors`` collects uncaught page errors, console errors and any JavaScript dialog
(alert/confirm/prompt, dismissed at once), ``requests`` every URL the page asked for.
Tests skip with a clear reason when /usr/bin/chromium or playwright is absent (CI
installs both).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")

#: Flags for a quiet, offline-friendly headless Chromium (no background traffic).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
)


def require_browser() -> None:
    """Skip the calling test unless Chromium and playwright are available."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium to run browser tests")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (python client)")


@contextmanager
def open_page(
    path: str | Path,
    *,
    width_px: int = 1000,
    height_px: int = 700,
    settle_ms: int = 300,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[Any, list[str], list[str]]]:
    """Open a local file in headless Chromium; yield ``(page, errors, requests)``.

    ``env`` adds environment variables for the browser process (e.g. a
    ``FONTCONFIG_FILE`` that hides the machine's fonts).

    The page has fired ``load`` and then had ``settle_ms`` milliseconds to run its
    scripts. ``errors`` holds ``"pageerror: ..."``, ``"console: ..."`` and
    ``"dialog: ..."`` entries; ``requests`` every requested URL, in order.
    """
    require_browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        import os

        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=list(CHROMIUM_ARGS),
            headless=True,
            env={**os.environ, **env} if env else None,
        )
        try:
            page = browser.new_page(viewport={"width": width_px, "height": height_px})
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on(
                "console",
                lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
            )

            def on_dialog(dialog: Any) -> None:
                errors.append(f"dialog: {dialog.type} {dialog.message}")
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.on("request", lambda req: requests.append(req.url))
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(settle_ms)
            yield page, errors, requests
        finally:
            browser.close()


def screenshot(page: Any, path: str | Path) -> Path:
    """Save a PNG screenshot of the viewport and return its path."""
    out = Path(path)
    page.screenshot(path=str(out))
    return out


def distinct_colours(png: str | Path) -> int:
    """Number of distinct RGB colours in a PNG (Pillow)."""
    image_mod = pytest.importorskip("PIL.Image", reason="pip install pillow")
    with image_mod.open(io.BytesIO(Path(png).read_bytes())) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 24)
    return len(colours or [])


def browser_version() -> str:
    """The version string of the Chromium that playwright drives."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            return str(browser.version)
        finally:
            browser.close()
