"""graphtorch.report: one self-contained HTML file, loaded in headless Chromium.

The browser tests skip (with the reason) only where no Chromium is installed; .ci/run installs
Debian's `chromium` package.
"""

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
import sin_regression
from conftest import lenet_train_step

import graphtorch as gt
import graphtorch.nn as nn

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


def chromium(tmp_path, page: str, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on file://page with a fresh profile; stderr carries the console log."""
    profile = tmp_path / f"profile-{len(os.listdir(tmp_path))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--window-size=1500,1000",
           *args, f"file://{os.path.abspath(page)}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def rendered(tmp_path, page: str) -> tuple[str, str]:
    """(the DOM after the page's script ran, the browser's log)."""
    done = chromium(tmp_path, page, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Counter(HTMLParser):
    """Per SVG graph (data-stage): its node elements; and the text of elements by id."""

    def __init__(self):
        super().__init__()
        self.nodes: dict[str, int] = {}
        self.stage = None
        self.by_id: dict[str, str] = {}
        self._open: list[str] = []
        self.attrs_of: dict[str, dict] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "data-stage" in a:
            self.stage = a["data-stage"]
            self.nodes[self.stage] = 0
        if tag == "g" and "node" in (a.get("class") or "").split():
            self.nodes[self.stage] += 1
        if "id" in a:
            self.attrs_of[a["id"]] = a
            self.by_id.setdefault(a["id"], "")
        if tag not in VOID:  # elements without an end tag must not stay on the stack
            self._open.append(a.get("id"))

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for i in self._open:
            if i is not None:
                self.by_id[i] += data


def parse(dom: str) -> Counter:
    c = Counter()
    c.feed(dom)
    return c


def _input(shape, seed=0):
    return gt.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _expected_nodes(fn) -> dict[str, int]:
    """data-stage -> node count, from the compiled entries themselves."""
    out = {}
    for k, entry in enumerate(fn.entries.values()):
        if entry.joint is not None:
            out[f"e{k}-joint"] = len(entry.joint.nodes)
        for name, graph in (("forward", entry.forward), ("backward", entry.backward)):
            if graph is not None:
                a = graph.artifacts
                first = "partitioned" if entry.backward is not None else "traced"
                for stage, g in ((first, a.traced), ("optimized", a.optimized), ("fused", a.optimized)):
                    out[f"e{k}-{name}-{stage}"] = len(g.nodes)
    return out


@needs_chromium
def test_lenet_train_step_report_renders_every_node_and_a_kernel(tmp_path):
    step = gt.compile(lenet_train_step()[1])
    x, y = _input((4, 1, 32, 32)), gt.from_numpy(np.arange(4) % 10)
    path = gt.report(step, x, y, path=str(tmp_path / "lenet.html"), runs=2)
    assert path == str(tmp_path / "lenet.html")
    page = open(path, encoding="utf-8").read()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from a network
    dom, log = rendered(tmp_path, path)
    assert "Uncaught" not in log
    doc = parse(dom)
    assert doc.by_id["errors"] == ""
    assert 'data-ready="yes"' in dom
    assert doc.nodes == _expected_nodes(step) and len(doc.nodes) == 3 and min(doc.nodes.values()) > 100
    details = doc.by_id["details"]  # the script clicked the first node that has a kernel
    assert "fusion group" in details and "group " in details and "define " in details
    assert "lenet_digits.py:" in details and "x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))" in page
    assert "cannot fuse" in dom and "GFLOP/s" in dom and "µs" in dom
    assert 'class="buffer"' in dom and "compiled arena" in dom and "eager, all intermediates" in dom
    shot = tmp_path / "lenet.png"
    done = chromium(tmp_path, path, f"--screenshot={shot}")
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a drawn page, not an empty one


@needs_chromium
def test_sin_mlp_report_has_the_backward_graph_and_kernel_times(tmp_path):
    gt.manual_seed(0)
    model = gt.compile(sin_regression.NeuralNetworks())
    path = gt.report(model, _input((64, 1)), path=str(tmp_path / "sin.html"))
    dom, log = rendered(tmp_path, path)
    doc = parse(dom)
    assert "Uncaught" not in log and doc.by_id["errors"] == ""
    assert doc.nodes == _expected_nodes(model._compiled) and {"e0-joint", "e0-backward-fused"} <= set(doc.nodes)
    assert "forward · partitioned" in dom and "backward · fused" in dom and "backward: kernel times" in dom
    assert dom.count('class="bar"') >= 4 and "No kernel times" not in dom  # the backward ran, timed
    assert all(p.grad is None for p in model.parameters())  # and left no gradients behind


@needs_chromium
def test_the_detector_sees_a_script_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><div id=errors></div><script>"
                    "window.addEventListener('error', function(e){document.getElementById('errors').textContent"
                    " = 'Uncaught ' + e.message;});</script><script>no_such_function();</script></body></html>")
    dom, log = rendered(tmp_path, str(page))
    assert "Uncaught" in log and "no_such_function" in parse(dom).by_id["errors"]


def test_report_of_an_already_compiled_function_shows_each_entry_and_why_it_recompiled(tmp_path):
    fn = gt.compile(lambda x: (x * 2).relu().sum(0), backend="interpreter")
    for n in (4, 4, 6, 6):
        fn(_input((n, 3)))
    path = gt.report(fn, path=str(tmp_path / "r.html"))
    page = open(path, encoding="utf-8").read()
    assert page.count('<article class="entry">') == 2
    assert "recompiled because input 0: size mismatch at dim 0, expected 4, got 6" in page
    assert "No kernel times" in page  # the interpreter has no kernels to time
    assert "no generated code" in page  # the script's text for a group without code


def test_report_without_entries_or_inputs_says_what_to_pass():
    with pytest.raises(ValueError, match=r"has no compiled entries yet: pass example inputs"):
        gt.report(gt.compile(lambda x: x + 1))


def test_report_dir_writes_one_file_per_compiled_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHTORCH_REPORT_DIR", str(tmp_path / "reports"))
    model = gt.compile(nn.Linear(3, 2))
    with gt.no_grad():
        model(_input((4, 3)))
        model(_input((5, 3)))
        model(_input((5, 3)))
    files = sorted(os.listdir(tmp_path / "reports"))
    assert files == ["Linear-0.html", "Linear-1.html"]
    second = (tmp_path / "reports" / "Linear-1.html").read_text()
    assert "size mismatch at dim 0, expected 4, got 5" in second and second.count('<article class="entry">') == 1
