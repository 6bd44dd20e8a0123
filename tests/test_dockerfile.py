"""The Dockerfile, checked by reading it (docker build cannot run here).

Rules (hadolint codes where one exists):
  base      every FROM resolves (through ARG defaults) to python:3.11-slim*, with an
            explicit tag, never `latest` (DL3006, DL3007); the runtime stage too
  user      the final stage switches to a named non-root USER before ENTRYPOINT and
            never back to root (DL3002)
  entry     ENTRYPOINT ["neurolocal"] and CMD in exec (JSON) form (DL3025)
  pip       every `pip install` / `pip wheel` has --no-cache-dir (DL3042); ray is pinned
            to one version (every node and the driver must run the same Ray)
  extras    no `[test]`/`[dev]` extras, no test or dev tools (pytest, torch, hypothesis,
            gcc, build-essential, git, vim) installed
  apt       an apt-get install uses -y --no-install-recommends and removes
            /var/lib/apt/lists in the same RUN (DL3008, DL3009, DL3015); no apt-get upgrade
            (DL3005)
  shell     no `cd` in RUN (use WORKDIR, DL3003), no sudo (DL3004), no curl|sh pipes
  copy      COPY not ADD (DL3020); every local COPY source exists in the repository
            and is not excluded by .dockerignore; .dockerignore keeps .git and tests out
  secrets   no token or password in ENV, ARG or LABEL; token auth stays on
            (RAY_AUTH_MODE=token) and the token comes from a mounted file
"""

import json
import re
import shlex
from fnmatch import fnmatch

import pytest

from conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuations joined."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


STEPS = instructions(DOCKERFILE.read_text())


def stages() -> list[list[tuple[str, str]]]:
    found: list[list] = []
    for step in STEPS:
        if step[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(step)
    return found


def arg_defaults() -> dict[str, str]:
    defaults = {}
    for keyword, rest in STEPS:
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def resolve(text: str) -> str:
    defaults = arg_defaults()
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), text)


def runs() -> list[str]:
    return [resolve(rest) for keyword, rest in STEPS if keyword == "RUN"]


def test_parser_reads_every_instruction():
    keywords = {k for k, _ in STEPS}
    assert keywords <= {"FROM", "ARG", "ENV", "LABEL", "WORKDIR", "COPY", "RUN", "USER",
                        "EXPOSE", "ENTRYPOINT", "CMD"}
    assert len(stages()) >= 1


def test_base_images_are_pinned_python_311_slim():
    images = [resolve(rest.split()[0]) for keyword, rest in STEPS if keyword == "FROM"]
    assert images
    for image in images:
        assert image.startswith("python:3.11-slim"), image
        name, _, tag = image.partition(":")
        assert tag and tag != "latest", image


def test_final_stage_runs_as_non_root_before_entrypoint():
    final = stages()[-1]
    users = [(i, rest) for i, (k, rest) in enumerate(final) if k == "USER"]
    entry = [i for i, (k, _) in enumerate(final) if k == "ENTRYPOINT"]
    assert users and entry
    last_index, last_user = users[-1]
    assert last_user.split(":")[0] not in ("root", "0"), last_user
    assert last_index < entry[-1]
    assert all(rest.split(":")[0] not in ("root", "0") for _, rest in users)
    # the user is created in this stage
    assert any("useradd" in rest and last_user in rest for k, rest in final if k == "RUN")


def test_entrypoint_is_neurolocal_in_exec_form():
    entries = [rest for k, rest in STEPS if k == "ENTRYPOINT"]
    assert len(entries) == 1
    assert json.loads(entries[0]) == ["neurolocal"]
    for rest in (r for k, r in STEPS if k == "CMD"):
        assert isinstance(json.loads(rest), list)


def pip_commands() -> list[list[str]]:
    found = []
    for command in runs():
        for part in re.split(r"&&|;", command):
            words = shlex.split(part)
            is_pip = words[:1] in (["pip"], ["pip3"]) or words[:3] == ["python", "-m", "pip"]
            if is_pip:
                found.append(words)
    return found


def test_pip_never_keeps_a_cache_and_pins_ray():
    commands = pip_commands()
    assert commands
    for words in commands:
        if {"install", "wheel"} & set(words):
            assert "--no-cache-dir" in words, words
    requirements = [w for words in commands for w in words if w.startswith("ray")]
    assert requirements and all(re.fullmatch(r"ray==\d+\.\d+\.\d+", r) for r in requirements)


def test_no_test_or_dev_extras_or_tools():
    text = " ".join(runs())
    assert not re.search(r"\[(test|dev|tests|docs)\]", text)
    for tool in ("pytest", "torch", "hypothesis", "build-essential", "gcc", "git", "vim",
                 "ipython", "jupyter"):
        assert not re.search(rf"(^|[\s'\"]){re.escape(tool)}([\s=<>'\"]|$)", text), tool


def test_apt_installs_are_minimal_and_cleaned():
    for command in runs():
        assert "apt-get upgrade" not in command and "dist-upgrade" not in command
        if re.search(r"\bapt(-get)? install\b", command):
            assert "apt-get install" in command, "use apt-get, not apt, in scripts"
            assert "--no-install-recommends" in command and " -y" in command
            assert "rm -rf /var/lib/apt/lists/*" in command


def test_shell_hygiene():
    for command in runs():
        assert not re.search(r"(^|&&|;)\s*cd\s", command), command
        assert "sudo " not in command
        assert not re.search(r"(curl|wget)[^|]*\|\s*(ba)?sh", command)


def ignored(path: str, patterns: list[str]) -> bool:
    return any(fnmatch(path, p) or fnmatch(path, p.rstrip("/") + "/*") or
               fnmatch(path, "**/" + p) for p in patterns)


def test_copy_sources_exist_and_are_not_ignored():
    assert not any(k == "ADD" for k, _ in STEPS)
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for pattern in (".git", "tests"):
        assert pattern in patterns
    for keyword, rest in STEPS:
        if keyword != "COPY" or "--from=" in rest:
            continue
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        for source in words[:-1]:
            assert (REPO_ROOT / source).exists(), source
            assert not ignored(source, patterns), source


def test_no_secret_baked_in_and_token_auth_stays_on():
    for keyword, rest in STEPS:
        if keyword in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(RAY_AUTH_TOKEN|PASSWORD|SECRET)\s*=\s*(?!/)", rest, re.I), rest
    env = " ".join(rest for k, rest in STEPS if k == "ENV")
    assert "RAY_AUTH_MODE=token" in env
    assert re.search(r"RAY_AUTH_TOKEN_PATH=/run/secrets/\S+", env)
    assert "auth_token" in DOCKERIGNORE.read_text()  # a token on disk never enters the context


@pytest.mark.parametrize("bad,rule", [
    ("FROM python:latest\nUSER app\nENTRYPOINT [\"neurolocal\"]\n", "latest"),
    ("FROM python:3.11-slim\nRUN pip install .\n", "cache"),
    ("FROM python:3.11-slim\nRUN cd /src && make\n", "cd"),
])
def test_the_rules_catch_what_they_claim(bad, rule):
    """The checks run on a bad Dockerfile fail (guards against rules that pass vacuously)."""
    global STEPS
    saved, STEPS = STEPS, instructions(bad)
    try:
        check = {"latest": test_base_images_are_pinned_python_311_slim,
                 "cache": test_pip_never_keeps_a_cache_and_pins_ray,
                 "cd": test_shell_hygiene}[rule]
        with pytest.raises(AssertionError):
            check()
    finally:
        STEPS = saved
