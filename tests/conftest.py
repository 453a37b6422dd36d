"""Test-wide guards: nothing may reach a model hub; everything runs on the CPU."""

import os

# Fail loudly if any code path reaches for a hub: offline mode plus an endpoint that refuses.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("LATENTGRAPH_DEVICE", "cpu")
# The test models are tiny: one intra-op thread is faster than two (thread hand-off dominates),
# and it keeps parallel test processes (CLI and server subprocesses) from fighting over cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Tests never write into the checkout: Hypothesis keeps its example database and caches (normally
# ./.hypothesis) in a temporary folder that lives as long as the test session.
try:
    import atexit
    import shutil
    import tempfile

    from hypothesis import settings as _hypothesis_settings
    from hypothesis.configuration import set_hypothesis_home_dir
    from hypothesis.database import DirectoryBasedExampleDatabase

    _HYPOTHESIS_DIR = tempfile.mkdtemp(prefix="latentgraph-hypothesis-")
    atexit.register(shutil.rmtree, _HYPOTHESIS_DIR, ignore_errors=True)
    set_hypothesis_home_dir(_HYPOTHESIS_DIR)  # its caches too (e.g. .hypothesis/constants)
    _hypothesis_settings.register_profile("latentgraph", database=DirectoryBasedExampleDatabase(_HYPOTHESIS_DIR))
    _hypothesis_settings.load_profile("latentgraph")
except ImportError:  # hypothesis is a test extra; the suites that use it skip without it
    pass
