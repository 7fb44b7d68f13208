"""A shared link opened on a freshly started server gets the whole dashboard, not a bare page."""
from tests.browser.conftest import screenshot, start_streamlit, stop, wait_for_app


def test_first_request_is_a_share_link(browser, tmp_path):
    process, url = start_streamlit(tmp_path / "data", tmp_path / "streamlit.log")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/train?lr=0.1&batch_size=64")  # nothing has run st.navigation yet
        wait_for_app(page, timeout=90_000)
        page.get_by_text("Device:").wait_for(timeout=60_000)
        nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
        assert "Train" in nav and "Sweep" in nav
        assert "common" not in nav and "charts" not in nav  # helper modules are not pages
        screenshot(page, "direct-link")
        page.close()
    finally:
        stop(process)
