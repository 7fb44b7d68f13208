"""Test-wide settings."""
import os

from streamlit import config

# AppTests train in threads of the test process (fast, no worker processes to start per test);
# tests/test_workers.py makes its own pools, and the browser tests' real server gets the value
# this was before (unset: the default pool, one worker per core), see tests/browser/conftest.py.
SERVER_WORKERS = os.environ.get("LRCORE_WORKERS")
os.environ["LRCORE_WORKERS"] = "0"

# The served app shows only an exception's type (.streamlit/config.toml); AppTest failures
# should say everything.
config.set_option("client.showErrorDetails", "full")
