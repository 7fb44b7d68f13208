"""sweep page (being built)."""
import streamlit as st

st.title("Sweep")
st.info("This page is being built.")
