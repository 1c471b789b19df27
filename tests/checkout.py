"""The checkout these tests belong to (conftest.py also gives it to the code as ``$LC_ROOT``)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILES_DIR = REPO_ROOT / "profiles"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
