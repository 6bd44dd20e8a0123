"""Issue 28, scope 3: the HTML report runs no one else's code.

- report.js builds no markup from strings: a scan of the script fails on innerHTML and
  every relative of it (the script puts text into text nodes and attribute values only);
- the inline JSON cannot close its <script> element or open a comment (`</script>`,
  `<!--` in a graph name: the page used to be blank), and reads back equal;
- the page carries a Content-Security-Policy allowing only its own inline script and
  style, by hash;
- in real headless Chromium, reports built from a hostile traffic log (markup in every
  string: kinds, vertex names, hosts, actors, writers, runs, settings, the graph name) and
  from a `neurolocal run` of a hostile topology (markup in its name) render, are hovered
  over every element that has a tooltip and clicked on every control, and no injected
  script runs (it would set an attribute on the root element);
- the harness catches one: the same page with the tooltip's escaping turned off runs the
  injected script on hover (and only then), the page with raw inline JSON runs it at
  load, and with the escaping off but the policy kept the browser still refuses it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from neurolocal.cli import main
from neurolocal.traffic.html import (ASSETS, collect, content_security_policy, csp_hash,
                                     inline_json, render)
from neurolocal.traffic.log import TrafficRecorder
from conftest import TOPOLOGIES

MARK = "data-pwned"


def payloads(where: str) -> list[str]:
    """Strings that run script if a page ever treats them as markup; each names `where`."""
    act = f"document.documentElement.setAttribute('{MARK}-{where}','1')"
    return [f'<img src=x onerror="{act}">',
            f"</script><script>{act}</script>",
            f"<!--<script>{act}</script>",
            f'"><svg><script>{act}</script></svg>',
            f"]]><iframe srcdoc=\"<script>parent.{act}</script>\"></iframe>"]


@pytest.fixture(scope="module")
def hostile_log(tmp_path_factory) -> Path:
    """A log every string of which is markup: two writers, all kinds, energy records."""
    root = tmp_path_factory.mktemp("hostile-report") / "traffic"
    vertices = [f"v{i}{p}" for i, p in enumerate(payloads("vertex"))]
    kinds = ["value", "error"] + payloads("kind")
    hosts, actors = payloads("host"), payloads("actor")
    settings = {"engine": payloads("setting")[0], "mode": payloads("setting")[1],
                payloads("settingkey")[0]: payloads("setting")[2], "eta": 1.0,
                "schedule": payloads("setting")[3], "placement": payloads("setting")[4]}
    graph = "g" + "".join(payloads("graph"))
    for w, writer in enumerate(payloads("writer")[:2]):
        recorder = TrafficRecorder(root, f"run{w}" + payloads("run")[0], writer, graph=graph,
                                   settings=settings)
        t = 1000.0
        for batch in range(3):
            for round_ in range(3):
                for i, kind in enumerate(kinds):
                    src, dst = vertices[i % len(vertices)], vertices[(i + 1) % len(vertices)]
                    recorder.record(batch, round_, src, dst, kind, 64 + i, t, t + 0.001,
                                    src_host=hosts[i % len(hosts)],
                                    dst_host=hosts[(i + 1) % len(hosts)],
                                    src_actor=actors[i % len(actors)],
                                    dst_actor=actors[(i + 2) % len(actors)])
                    t += 0.002
            recorder.record(batch, 0, "scheduler", "scheduler", "control", 8, t, t + 0.001)
            recorder.record_energy(batch, [3.0, 2.0, 1.0],   # the layer x round heat map
                                   {v: [1.0, 0.5, 0.0] for v in vertices})
        recorder.close()
    return root


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    """`neurolocal run` of a topology whose name and description are markup."""
    root = tmp_path_factory.mktemp("hostile-run")
    text = (TOPOLOGIES / "dag.yaml").read_text()
    name = json.dumps("t" + "".join(payloads("topology")))
    text = re.sub(r"(?m)^name:.*$", f"name: {name}", text) if re.search(r"(?m)^name:", text) \
        else f"name: {name}\n" + text
    text = re.sub(r"(?m)^description:.*$", "", text)
    text = f"description: {json.dumps(''.join(payloads('description')))}\n" + text
    topology = root / "hostile.yaml"
    topology.write_text(text)
    rng = np.random.default_rng(28)
    np.savez(root / "data.npz", x=rng.random((24, 12)), y=rng.random((24, 4)))
    out = root / "out"
    assert main(["run", str(topology), "--engine", "local", "--epochs", "1", "--batch-size", "8",
                 "--data", str(root / "data.npz"), "--out", str(out), "--quiet"]) == 0
    assert (out / "report.html").exists()
    return out


# --- static checks ------------------------------------------------------------------------

#: ways a script turns a string into markup or code
FORBIDDEN = [r"\.innerHTML", r"\.outerHTML", r"insertAdjacentHTML", r"document\.write",
             r"createContextualFragment", r"DOMParser", r"\bsrcdoc\b", r"\beval\s*\(",
             r"new\s+Function", r"setTimeout\s*\(\s*[\"'`]", r"setInterval\s*\(\s*[\"'`]",
             r"\.setHTML", r"\bhtml\s*:", r"javascript:"]


def test_report_js_builds_no_markup_from_strings():
    script = (ASSETS / "report.js").read_text()
    code = re.sub(r"/\*.*?\*/", "", script, flags=re.S)        # the header comment names them
    found = [p for p in FORBIDDEN if re.search(p, code)]
    assert not found, f"report.js uses {found}: strings from a log would become markup"
    # nor a literal tag in a string that something could parse later
    tags = re.findall(r"[\"'`][^\"'`\n]*<[a-zA-Z/!][^\"'`\n]*[\"'`]", code)
    assert not tags, tags
    # every attribute name is a literal in the code, never data: no setAttribute(on...)
    assert not re.search(r"setAttribute\(\s*[a-z_]+\s*[,)]", code.replace("k, v", "")), \
        "setAttribute with a computed name"


def test_the_scan_catches_a_forbidden_call():
    """The scan itself can fail: the issue's original line is caught."""
    code = 'tip.innerHTML = html;'
    assert any(re.search(p, code) for p in FORBIDDEN)


def test_inline_json_survives_script_breakers():
    data = {"a": "</script><!--<script>x</script>]]>&amp;\u2028\u2029", "b": ["<", ">", "&"]}
    text = inline_json(data)
    assert not re.search(r"[<>&]", text)
    assert json.loads(text) == data


def test_report_has_a_hash_policy_and_escaped_title(hostile_log):
    data = collect(hostile_log)
    page = render(data)
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">',
                       page).group(1)
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert f"script-src {csp_hash(script)};" in policy and "unsafe-inline" not in policy
    assert f"style-src {csp_hash(style)};" in policy and "default-src 'none'" in policy
    # exactly two script elements, and the data one parses back to what collect made
    assert page.count("<script") == 2 and page.count("</script>") == 2
    body = re.search(r'<script id="report-data" type="application/json">(.*?)</script>',
                     page, re.S).group(1)
    assert json.loads(body) == json.loads(json.dumps(data))
    assert json.loads(body)["graph_name"].startswith("g<img")
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert "<" not in title and "&lt;img" in title


# --- in the browser -----------------------------------------------------------------------

HOVER_AND_CLICK = """
(() => {
  let hovered = 0, clicked = 0;
  for (const el of document.querySelectorAll('svg *, .legend *, table *')) {
    const r = el.getBoundingClientRect();
    const x = r.left + r.width / 2, y = r.top + r.height / 2;
    for (const type of ['mousemove', 'mouseover', 'mouseenter']) {
      el.dispatchEvent(new MouseEvent(type, {bubbles: true, clientX: x, clientY: y}));
    }
    hovered++;
  }
  for (const el of document.querySelectorAll('button, input, label, a')) { el.click(); clicked++; }
  for (const el of document.querySelectorAll('button')) { el.click(); clicked++; }
  return [hovered, clicked];
})()
"""


def _browser():
    from headless import Browser, chromium

    executable = chromium()
    if executable is None:
        pytest.skip("chromium is not installed (.ci/run installs it: apt-get install chromium)")
    return Browser(executable)


def pwned(browser) -> list[str]:
    return browser.evaluate(f"[...document.documentElement.attributes].map(a => a.name)"
                            f".filter(n => n.startsWith('{MARK}'))") or []


def visit(page: Path, real_mouse: bool = True) -> dict:
    """Open, wait for the page, read injected marks before and after hovering/clicking."""
    with _browser() as browser:
        browser.open(page)
        rendered = browser.wait_for("document.body && document.body.dataset.rendered === '1'",
                                    tries=100)
        before = pwned(browser)
        counts = browser.evaluate(HOVER_AND_CLICK) if rendered else [0, 0]
        if real_mouse and rendered:                 # real pointer events over the charts too
            for y in range(200, 2400, 45):
                for x in range(40, 1400, 60):
                    browser.send("Input.dispatchMouseEvent",
                                 {"type": "mouseMoved", "x": x, "y": y % 880 + 10})
                if y % 880 < 45:
                    browser.evaluate("window.scrollBy(0, 850)")
        browser.evaluate("new Promise(r => setTimeout(() => r(1), 300))")
        after = pwned(browser)
        tip = browser.evaluate("(document.getElementById('tip') || {}).textContent || ''")
        return {"rendered": rendered, "before": before, "after": after, "counts": counts,
                "tip": tip, "errors": browser.errors(),
                "text": browser.evaluate("document.body ? document.body.innerText : ''") or ""}


def test_hostile_log_runs_no_script_on_load_hover_or_click(hostile_log, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(collect(hostile_log)))
    seen = visit(page)
    assert seen["rendered"], seen["errors"]
    assert seen["before"] == [] and seen["after"] == [], seen
    hovered, clicked = seen["counts"]
    assert hovered > 100 and clicked > 5
    # the markup is shown as text, so the test did reach it
    assert "<img src=x onerror=" in seen["text"] and "</script><script>" in seen["text"]


def test_hostile_topology_run_report_runs_no_script(hostile_run):
    seen = visit(hostile_run / "report.html", real_mouse=False)
    assert seen["rendered"], seen["errors"]
    assert seen["before"] == [] and seen["after"] == [], seen
    assert "<img src=x onerror=" in seen["text"]


# --- the harness catches an injection ---------------------------------------------------

def _weakened(hostile_log, tmp_path, *, tip: bool = False, raw_json: bool = False,
              policy: bool = False) -> Path:
    """The real page with one defence taken out."""
    page = render(collect(hostile_log))
    if tip:   # the tooltip parses its strings as markup (the bug of the issue)
        old = "kids.push(part instanceof Node ? part : String(part));"
        assert old in page
        page = page.replace(old, "kids.push(part instanceof Node ? part : "
                                 "document.createRange().createContextualFragment(String(part)));")
    if raw_json:
        body = re.search(r'(<script id="report-data" type="application/json">)(.*?)(</script>)',
                         page, re.S)
        raw = json.dumps(json.loads(body.group(2)))
        page = page[:body.start(2)] + raw + page[body.end(2):]
    meta = re.compile(r'<meta http-equiv="Content-Security-Policy"[^>]*>\n')
    if policy:  # the policy a page with this (weakened) script would carry
        script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
        style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
        value = content_security_policy(script, style)
        page = meta.sub(lambda _: f'<meta http-equiv="Content-Security-Policy" '
                                  f'content="{value}">\n', page)
    else:
        page = meta.sub("", page)
    path = tmp_path / f"weak-{tip}-{raw_json}-{policy}.html"
    path.write_text(page)
    return path


def test_the_harness_sees_a_tooltip_injection_on_hover(hostile_log, tmp_path):
    seen = visit(_weakened(hostile_log, tmp_path, tip=True), real_mouse=False)
    assert seen["rendered"], seen["errors"]
    assert seen["before"] == []                      # nothing until the reader hovers
    assert any(m.startswith(f"{MARK}-kind") for m in seen["after"]), seen


def test_the_harness_sees_a_json_breakout_on_load(hostile_log, tmp_path):
    seen = visit(_weakened(hostile_log, tmp_path, raw_json=True), real_mouse=False)
    assert any(m.startswith(MARK) for m in seen["before"] + seen["after"]), seen


def test_the_policy_alone_stops_a_tooltip_injection(hostile_log, tmp_path):
    seen = visit(_weakened(hostile_log, tmp_path, tip=True, policy=True), real_mouse=False)
    assert seen["rendered"], seen["errors"]
    assert seen["before"] == [] and seen["after"] == [], seen
    assert any("Content Security Policy" in e for e in seen["errors"]), seen["errors"]
