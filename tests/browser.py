"""The system's headless browser for the tests that look at pages (the MLflow UI, `dvc plots show`)."""

from __future__ import annotations

import shutil

import pytest

# The system's browser, never a download (`playwright install` cannot work on a closed network): Debian's
# chromium (scripts/test.sh installs it), or the google-chrome of GitHub's ubuntu-latest.
BROWSERS = ("/usr/bin/chromium", "chromium", "google-chrome")
# Without the background-networking flags Chromium keeps calling Google's hosts, which a closed network refuses.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_browser() -> str | None:
    """The first of BROWSERS that is installed, or None."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def browser_path() -> str:
    """The installed browser's path; the test is skipped, saying why and how to install one, when there is none."""
    path = find_browser()
    if path is None:
        pytest.skip(f"no browser: none of {', '.join(BROWSERS)} is installed (`bash scripts/test.sh` installs "
                    "Debian's chromium where it runs as root or with passwordless sudo)")
    return path
