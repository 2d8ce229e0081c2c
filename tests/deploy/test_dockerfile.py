"""deploy/Dockerfile: hadolint-clean, multi-stage, and the runtime image is what the manifests expect."""

from __future__ import annotations

import json

from tests.deploy.helpers import DEPLOY, REPO, dockerfile_instructions, run, runtime_stage, tool


def _runtime(keyword: str) -> list[str]:
    return [arguments for instruction, arguments in runtime_stage() if instruction == keyword]


def test_hadolint_passes():
    run(tool("hadolint"), "--failure-threshold", "info", DEPLOY / "Dockerfile")


def test_wheel_is_built_in_a_builder_stage():
    instructions = dockerfile_instructions()
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert len(starts) == 2
    builder = instructions[starts[0] : starts[1]]
    assert builder[0] == ("FROM", "python:3.11-slim AS build")
    assert ("COPY", "pyproject.toml README.md ./") in builder
    assert any(keyword == "RUN" and "pip wheel" in arguments for keyword, arguments in builder)
    assert _runtime("FROM") == ["python:3.11-slim AS runtime"]
    assert any(arguments.startswith("--from=build ") for arguments in _runtime("COPY"))


def test_runs_as_a_numeric_non_root_user():
    (user,) = _runtime("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or gid.isdigit())


def test_entrypoint_is_exec_form_consumer_run():
    assert [json.loads(arguments) for arguments in _runtime("ENTRYPOINT")] == [["consumer"]]
    assert [json.loads(arguments) for arguments in _runtime("CMD")] == [["run"]]


def test_healthcheck_probes_liveness_with_python():
    (healthcheck,) = _runtime("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert json.loads(command)[:2] == ["python", "-c"]
    assert "urllib" in command and "http://127.0.0.1:9400/healthz" in command
    assert "--interval=" in options and "--timeout=" in options


def test_environment_and_port():
    env = " ".join(_runtime("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    assert _runtime("EXPOSE") == ["9400"]


def test_no_secrets_are_baked_in():
    text = " ".join(arguments for keyword, arguments in dockerfile_instructions() if keyword in {"ENV", "ARG"})
    for word in ("SECRET", "PASSWORD", "TOKEN", "AWS_ACCESS_KEY_ID"):
        assert word not in text.upper()


def test_build_context_keeps_what_the_build_copies():
    # The build context is the repository root; .dockerignore sends only what COPY needs.
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    for needed in ("pyproject.toml", "README.md", "consumer/"):
        assert f"!{needed}" in ignore
        assert (REPO / needed).exists()
