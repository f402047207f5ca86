"""LSAP: surrogate-assisted LM pretraining, replicated beside KD, SALT and MiniPLM."""

from pathlib import Path

__version__ = "0.1.0"

# The repository root: config/ (schema, assets manifest) lives beside src/.
REPO_ROOT = Path(__file__).resolve().parents[2]
