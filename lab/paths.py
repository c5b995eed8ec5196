"""Where the lab finds the repository it runs in: the reference service, its files, its venv."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PUBLISHERS_FILE = REPO_ROOT / "publishers.toml"
