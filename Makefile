# Two commands on a fresh machine:  make demo  |  make test
PY      := .venv/bin/python
STAMP   := .venv/.installed

.PHONY: demo test clean chromium libsoxr

$(STAMP): requirements.txt requirements-serve.txt setup.py
	python3 -m venv .venv
	.venv/bin/pip install -q -r requirements.txt -r requirements-serve.txt
	.venv/bin/pip install -q --no-deps --no-build-isolation -e .
	# bytecode now, as pip does for installed packages: an editable install has none, and where
	# PYTHONDONTWRITEBYTECODE is set every run would compile the runtime again (~0.1-0.3 s of start-up)
	.venv/bin/python -m compileall -q objaudio_rt export benchmarks training > /dev/null
	touch $(STAMP)

# The embedded model's ONNX graphs go to the cache first (once, about 20 s; reused after): with them the
# runtime's default backend on a CPU is onnxruntime, which starts without the network libraries.
demo: $(STAMP)
	$(PY) -m export.onnx --cache --quiet
	$(PY) -m objaudio_rt demo --out demo_out --force

test: $(STAMP) chromium libsoxr
	$(PY) -m pytest -q

# The page's browser test drives Debian's chromium (Playwright's own browser download cannot work here).
chromium:
	@test -x /usr/bin/chromium || if [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else echo "chromium is missing and this is not root: the browser test will be skipped" \
		"(sudo apt-get install chromium)"; fi

# libobjaudio resamples with libsoxr (objaudio_resample); without its headers the native tests are skipped.
libsoxr:
	@test -f /usr/include/soxr.h || if [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y libsoxr-dev; \
	else echo "libsoxr-dev is missing and this is not root: the native tests will be skipped" \
		"(sudo apt-get install libsoxr-dev)"; fi

clean:
	rm -rf .venv demo_out build *.egg-info
