"""Test-wide settings."""
from streamlit import config

# The served app shows only an exception's type (.streamlit/config.toml); AppTest failures
# should say everything.
config.set_option("client.showErrorDetails", "full")
