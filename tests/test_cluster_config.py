"""scripts/cluster.yaml: a config `ray up` accepts (Ray's own schema and defaults), every
field documented by a comment, and Ray's token authentication carried to every node."""

import copy
import re

import yaml

from conftest import REPO_ROOT

CONFIG = REPO_ROOT / "scripts" / "cluster.yaml"


def load():
    return yaml.safe_load(CONFIG.read_text())


def test_ray_up_accepts_it():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load()
    validate_config(config)
    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` fills in for on-prem
    validate_config(prepared)
    assert config["provider"]["type"] == "local"
    assert prepared["max_workers"] == len(config["provider"]["worker_ips"])


def test_every_field_has_a_comment_above_it():
    lines = CONFIG.read_text().splitlines()
    documented_sections = ("provider", "auth", "docker")
    section = None
    for i, line in enumerate(lines):
        match = re.match(r"^( {0,2})([A-Za-z_/~.][\w/~.]*):", line)
        if not match:
            continue
        indent, key = match.groups()
        if not indent:
            section = key
        elif section not in documented_sections and section != "file_mounts":
            continue
        before = lines[i - 1].strip() if i else ""
        assert before.startswith("#") or " # " in line, f"line {i + 1}: {key} has no comment"


def test_the_token_reaches_every_node_and_auth_stays_on():
    config = load()
    options = " ".join(config["docker"]["run_options"])
    assert "-e RAY_AUTH_MODE=token" in options
    token_path = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+)", options).group(1)
    # the token file of the machine running `ray up` is copied to exactly that path
    assert config["file_mounts"][token_path] == "~/.ray/auth_token"
    assert "RAY_AUTH_TOKEN=" not in CONFIG.read_text()  # never the token itself
    text = CONFIG.read_text()
    assert "ray get-auth-token --generate" in text
    assert "RAY_AUTH_MODE=disabled" not in text


def test_ray_runs_in_the_projects_image_with_room_for_the_object_store():
    config = load()
    assert config["docker"]["image"].startswith("neurolocal:")
    options = config["docker"]["run_options"]
    assert "--init" in options and any(o.startswith("--shm-size=") for o in options)
    head = " ".join(config["head_start_ray_commands"])
    assert "--head" in head and "--include-dashboard=false" in head
    assert any("$RAY_HEAD_IP" in c for c in config["worker_start_ray_commands"])
