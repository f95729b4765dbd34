"""Shared test setup: hypothesis profiles, seeded RNG fixtures, the data folder.

Profiles (pick with HYPOTHESIS_PROFILE, default "dev"; CI uses "ci"):
  ci        derandomized, no deadline (the first Numba call compiles), moderate example counts
  dev       random, no deadline, fewer examples for quick local runs
  thorough  many examples, for a long local soak
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None, max_examples=20,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", deadline=None, max_examples=500,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, fixed-seed generator per test."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_library():
    """Reseed tinytensor's default generator so tests do not depend on their order."""
    import tinytensor as tt
    tt.manual_seed(0)
    yield


def data_file(name: str) -> Path:
    """``$TINYGPT_DATA/name``; skips the test, naming the variable and the file, when it is not there."""
    d = os.environ.get("TINYGPT_DATA")
    if not d:
        pytest.skip(f"needs {name} from the data folder: TINYGPT_DATA is not set (set it to a folder "
                    f"holding {name})")
    path = Path(d) / name
    if not path.exists():
        pytest.skip(f"needs $TINYGPT_DATA/{name}: {path} does not exist")
    return path


@pytest.fixture
def spam_tsv() -> Path:
    """``$TINYGPT_DATA/SMSSpamCollection.tsv`` (skips when absent, saying so)."""
    return data_file("SMSSpamCollection.tsv")


@pytest.fixture
def gpt2_vocab() -> Path:
    """``$TINYGPT_DATA/gpt2`` holding GPT-2's encoder.json and vocab.bpe (skips when absent, saying so)."""
    data_file("gpt2/encoder.json")
    return data_file("gpt2/vocab.bpe").parent


@pytest.fixture
def tinyshakespeare() -> Path:
    """``$TINYGPT_DATA/tinyshakespeare.txt`` (skips when absent, saying so)."""
    return data_file("tinyshakespeare.txt")
