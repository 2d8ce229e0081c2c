"""deploy/Dockerfile: hadolint-clean, multi-stage, and the images are what the manifests and the KCL
properties expect: the worker image (the default, last stage) and the KCL daemon image (``--target kcl``)."""

from __future__ import annotations

import json

from tests.deploy.helpers import DEPLOY, REPO, dockerfile_instructions, run, runtime_stage, tool


def _runtime(keyword: str) -> list[str]:
    return [arguments for instruction, arguments in runtime_stage() if instruction == keyword]


def image(stage: str, keyword: str) -> str:
    """The arguments of every ``keyword`` an image gets: from ``base``, then from its own stage."""
    built = stages()
    return " ".join(arguments for name in ("base", stage) for key, arguments in built[name] if key == keyword)


def test_hadolint_passes():
    run(tool("hadolint"), "--failure-threshold", "info", DEPLOY / "Dockerfile")


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions by its name (``FROM … AS name``), in file order."""
    found: dict[str, list[tuple[str, str]]] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            current = found.setdefault(arguments.rsplit(" AS ", 1)[1], [])
        current.append((keyword, arguments))
    return found


def test_dependencies_come_from_the_lock_files_in_builder_stages_and_the_worker_image_is_the_default():
    built = stages()
    # the last is what `docker build` makes; both images start from `base` (the user, the writable path)
    assert list(built) == ["build", "kcl-build", "kcl-jars", "base", "kcl", "runtime"]
    for builder, lock in (("build", "requirements.lock"), ("kcl-build", "requirements-kcl.lock")):
        assert ("COPY", f"pyproject.toml README.md LICENSE deploy/{lock} ./") in built[builder]
        (run,) = [arguments for keyword, arguments in built[builder] if keyword == "RUN"]
        assert "--require-hashes" in run and f"-r {lock}" in run and "--no-deps ." in run
        # the compiled item converter is built, and its absence fails the build
        assert "apt-get install -y --no-install-recommends gcc" in run
        assert run.index("--no-deps .") < run.index('python -c "import consumer.pipeline._attributes"')
    assert _runtime("FROM") == ["base AS runtime"] and built["kcl"][0] == ("FROM", "base AS kcl")
    assert built["base"][0] == ("FROM", "python:3.11-slim AS base")
    assert any(arguments.startswith("--from=build ") for arguments in _runtime("COPY"))


def test_the_kcl_image_runs_the_launcher_with_the_processor_it_names():
    kcl = stages()["kcl"]
    copies = [arguments for keyword, arguments in kcl if keyword == "COPY"]
    assert "--from=kcl-build /opt/venv /opt/venv" in copies
    assert "--from=kcl-jars /kcl/target/lib /opt/kcl/lib" in copies
    assert any(arguments.startswith("--from=eclipse-temurin:17") for arguments in copies)
    (entrypoint,) = [json.loads(arguments) for keyword, arguments in kcl if keyword == "ENTRYPOINT"]
    assert entrypoint[0] == "java" and entrypoint[-1] == "consumer.kcl.DynamoDBStreamsMultiLangDaemon"
    assert "/opt/kcl/classes:/opt/kcl/lib/*" in entrypoint
    (user,) = [arguments for keyword, arguments in kcl if keyword == "USER"]  # the user is made in `base`
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    # the properties baked in start the processor from the image's virtualenv
    properties = (DEPLOY / "kcl" / "streams-daemon.properties").read_text()
    assert "executableName = /opt/venv/bin/consumer kcl-processor" in properties.splitlines()
    # and reach AWS's endpoints: no emulator's address is a default of the image
    settings = [line for line in properties.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert not any("Endpoint" in line or "127.0.0.1" in line for line in settings)


def test_the_kcl_image_runs_only_jars_maven_verified():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    # the launcher's jars: a checksum that does not match fails the build
    assert "mvn -B -q --strict-checksums" in dockerfile
    # amazon-kclpy's own download (no checksums) does not stay in the image
    assert "rm -rf /opt/venv/lib/python3.11/site-packages/amazon_kclpy/jars" in dockerfile


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
    for stage in ("kcl", "runtime"):
        env = image(stage, "ENV")
        assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
        assert "CDC_DEAD_LETTER_PATH=/var/lib/cdc/" in env  # the path `base` makes writable
    assert _runtime("EXPOSE") == ["9400"]


def test_images_are_labelled_with_their_commit():
    assert ("ARG", "GIT_COMMIT=unknown") in stages()["base"]  # a build without --build-arg still says so
    for stage in ("kcl", "runtime"):
        labels = image(stage, "LABEL")
        assert 'org.opencontainers.image.revision="${GIT_COMMIT}"' in labels
        assert "org.opencontainers.image.version=" in labels and "org.opencontainers.image.title=" in labels
        assert "CONSUMER_GIT_COMMIT=${GIT_COMMIT}" in image(stage, "ENV")  # cdc_build_info{commit}


def test_no_secrets_are_baked_in():
    text = " ".join(arguments for keyword, arguments in dockerfile_instructions() if keyword in {"ENV", "ARG"})
    for word in ("SECRET", "PASSWORD", "TOKEN", "AWS_ACCESS_KEY_ID"):
        assert word not in text.upper()


def test_build_context_keeps_what_the_build_copies():
    # The build context is the repository root; .dockerignore sends only what COPY needs.
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    assert "consumer/**/*.so" in ignore  # a converter compiled for this machine is not the image's
    for needed in ("pyproject.toml", "README.md", "LICENSE", "consumer/", "deploy/kcl/pom.xml", "deploy/kcl/src/main/"):
        assert f"!{needed}" in ignore
        assert (REPO / needed).exists()
