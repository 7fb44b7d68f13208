# The README's two commands. Each does all of its own set-up (see setup.sh).
.PHONY: dashboard test bench

PORT ?= 8501
# 0.0.0.0 serves a class on the local network; the default listens on this machine only
ADDRESS ?= 127.0.0.1

dashboard:  ## start the dashboard on the bundled MNIST sample
	./setup.sh
	.venv/bin/python -m streamlit run dashboard.py --server.port $(PORT) --server.address $(ADDRESS)

test:  ## run the whole test suite (core, pages, browser)
	./setup.sh --test
	.venv/bin/python -m pytest

bench:  ## every benchmark in its quick mode (a few minutes, so breakage is seen); full runs: see each file
	./setup.sh --test
	set -e; for script in bench/bench_*.py; do echo "== $$script --quick"; .venv/bin/python $$script --quick; done  # figures, not pass/fail
