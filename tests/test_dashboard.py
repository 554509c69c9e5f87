"""The asv dashboard, rendered in a real browser (headless Chromium).

A short asv run (the tagging benchmarks) is recorded for the last three
commits of main by the history command (``make bench-history``) into a
temporary results folder, published, made offline-capable (asv's pages load
their JavaScript from CDNs; see modelexport.benchmarking.dashboard), served on
localhost and opened in Chromium: the page must list the benchmarks and draw a graph with a
point per commit. A screenshot
is kept in out/artifacts/dashboard.png. Marked slow; CI runs it through
`make test-slow`.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "out" / "artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
BENCHMARK = "bench_tagging.TaggingPass.time_tagging"
HISTORY = 3  # commits recorded by `make bench-history`'s command

pytestmark = pytest.mark.slow


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("asv")
    config = json.loads((REPO / "asv.conf.json").read_text())
    config.update(repo=str(REPO), benchmark_dir=str(REPO / "benchmarks"),
                  results_dir=str(work / "results"), html_dir=str(work / "html"),
                  env_dir=str(work / "env"))
    conf = work / "asv.conf.json"
    conf.write_text(json.dumps(config))
    asv = [sys.executable, "-m", "asv"]
    env = {**os.environ, "HOME": str(work)}
    subprocess.run([*asv, "machine", "--yes", "--machine", "dashboard-test"], env=env,
                   check=True, capture_output=True, cwd=work)
    # the history command itself, on the last HISTORY commits of main
    subprocess.run([sys.executable, "-m", "modelexport.benchmarking.history", "--count",
                    str(HISTORY), "--repo", str(REPO), "--machine", "dashboard-test",
                    "--asv", str(Path(sys.executable).parent / "asv"), "--",
                    "--config", str(conf), "--bench", "TaggingPass", "--quick"],
                   env=env, check=True, capture_output=True, cwd=work, timeout=1800)
    subprocess.run([*asv, "publish", "--config", str(conf)], env=env, check=True,
                   capture_output=True, cwd=work, timeout=300)
    subprocess.run([sys.executable, "-m", "modelexport.benchmarking.dashboard", str(work / "html"),
                    "--vendor", str(REPO / ".asv" / "vendor")], check=True, capture_output=True,
                   timeout=300)
    return work / "html"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(dashboard: Path):
    handler = functools.partial(_QuietHandler, directory=str(dashboard))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def render(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           "--virtual-time-budget=20000", *extra, url],
                          capture_output=True, text=True, timeout=180, check=False)


def test_dashboard_lists_benchmarks(served, tmp_path):
    dom = render(f"{served}/index.html", tmp_path, "--dump-dom").stdout
    assert "airspeed velocity" in dom.lower()
    assert "TaggingPass" in dom and "time_tagging" in dom


def test_dashboard_draws_a_graph_and_saves_a_screenshot(served, tmp_path):
    page = f"{served}/index.html#{BENCHMARK}"
    dom = render(page, tmp_path, "--dump-dom").stdout
    assert "flot-base" in dom, "no graph canvas on the benchmark page"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    render(page, tmp_path, f"--screenshot={shot}", "--window-size=1400,900")
    assert shot.exists() and shot.stat().st_size > 10_000


def test_published_graph_has_a_point_per_recorded_commit(dashboard):
    graphs = list(dashboard.glob(f"graphs/**/{BENCHMARK}.json"))
    assert graphs, "asv publish wrote no graph for the benchmark"
    points = json.loads(graphs[0].read_text())
    measured = [revision for revision, value in points
                if any(v is not None for v in (value if isinstance(value, list) else [value]))]
    assert len(set(measured)) == HISTORY, points
