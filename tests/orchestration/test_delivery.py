"""Delivery files agree with the project: environment.yml mirrors pyproject; the Dockerfile serves without torch."""

from __future__ import annotations

import re
import tomllib

import pytest
from orch_helpers import REPO

pytestmark = pytest.mark.unit


def _pip_lines(text: str) -> list[str]:
    return re.findall(r'^\s+- "([^"]+)"', text, flags=re.M)


def test_environment_yml_mirrors_every_pyproject_dependency_and_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) + [d for deps in project["optional-dependencies"].values() for d in deps]
    text = (REPO / "environment.yml").read_text()
    listed = _pip_lines(text)
    assert sorted(set(listed) - {"-e ."}) == sorted(set(wanted))
    for extra in project["optional-dependencies"]:
        assert f"# extra: {extra}" in text
    assert "python=3.11" in text and "-e ." in listed


def test_dockerfile_installs_the_app_extra_only_as_a_non_root_user_with_a_healthcheck():
    text = (REPO / "Dockerfile").read_text()
    installs = re.findall(r"pip install[^\n]*", text)
    assert installs and all("'.[app]'" in line for line in installs)
    assert not re.search(r"\.\[[^\]]*(train|spark|dev)", text)
    assert "find_spec('torch') is not None" in text  # the build fails if torch slipped in
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK ", text, flags=re.M)
    assert "cxr dashboard" in text and "ipykernel install --sys-prefix --name cxr" in text
    for path in ("lib", "notebooks", "models"):
        assert re.search(rf"^COPY {path} ", text, flags=re.M)
    ignore = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*" and {"!lib/", "!notebooks/", "!models/"} <= set(ignore)
