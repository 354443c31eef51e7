# Two commands on a fresh machine:  make demo  |  make test
PY      := .venv/bin/python
STAMP   := .venv/.installed

.PHONY: demo test clean

$(STAMP): requirements.txt setup.py
	python3 -m venv .venv
	.venv/bin/pip install -q -r requirements.txt
	.venv/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m objaudio_rt demo --out demo_out --force

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf .venv demo_out build *.egg-info
