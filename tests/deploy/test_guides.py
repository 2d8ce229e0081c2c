"""docs/deploy-eks.md and docs/deploy-ecs.md, checked offline the way a reader follows them: every
`aws` command names an operation of the AWS API with options that operation takes (botocore's
models, which the AWS CLI is generated from), every `file://` it passes exists in the repository or
is written by an earlier step and fits the parameter's shape (a `--cli-input-json` file, the whole
request); the EKS guide's values file passes the chart's schema and renders objects valid in strict
mode, and the names its later commands use (the Deployment, the Job, the service accounts the trust
policy names) are the ones the chart renders.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import botocore.session
import jsonschema
import pytest
import yaml
from botocore.validate import ParamValidator

from tests.deploy.helpers import CHART, REPO, json_file, of_kind, rendered, validate_strictly

GUIDE = REPO / "docs" / "deploy-eks.md"
KCL_GUIDE = REPO / "docs" / "kcl.md"
GUIDES = [GUIDE, REPO / "docs" / "deploy-ecs.md", KCL_GUIDE]
# Options every aws command takes, and the CLI's own commands that are no API operation.
GLOBAL_OPTIONS = {"--region", "--query", "--output", "--profile", "--no-cli-pager"}
CLI_COMMANDS = {("ecr", "get-login-password"), ("ecs", "wait"), ("logs", "tail")}
CLI_SERVICES = {"s3api": "s3"}


def blocks(language: str, guide: Path = GUIDE) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", guide.read_text(), re.MULTILINE | re.DOTALL)


def commands(guide: Path = GUIDE) -> list[str]:
    """The shell commands of ``guide``, continuation lines joined, in order."""
    joined = "\n".join(blocks("sh", guide)).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def aws_calls(guide: Path = GUIDE) -> list[tuple[str, str, list[str]]]:
    """(service, command, arguments) of every `aws` invocation, pipes and substitutions included."""
    calls = []
    for command in commands(guide):
        for match in re.finditer(r"(?:^|\$\(|\|\s*)aws ([a-z0-9-]+) ([a-z0-9-]+)([^|)]*)", command):
            calls.append((match.group(1), match.group(2), shlex.split(match.group(3))))
    return calls


def written_files() -> set[str]:
    """Files the guides' own commands write (``> name``)."""
    return {
        match
        for guide in GUIDES
        for command in commands(guide)
        for match in re.findall(r">\s*([\w.-]+\.json)", command)
    }


def values_file(guide: Path = GUIDE, name: str = "orders-values.yaml") -> dict[str, Any]:
    (text,) = [block for block in blocks("yaml", guide) if block.startswith(f"# {name}")]
    return yaml.safe_load(text)


def pascal(option: str) -> str:
    return "".join(part.capitalize() for part in option.removeprefix("--").split("-"))


MODELS = botocore.session.get_session()


CALLS = [(guide.name, *call) for guide in GUIDES for call in aws_calls(guide)]


@pytest.mark.parametrize(
    ("guide", "service", "command", "arguments"), CALLS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_aws_command_is_an_api_operation_with_options_it_takes(guide, service, command, arguments):
    if (service, command) in CLI_COMMANDS:
        return
    model = MODELS.get_service_model(CLI_SERVICES.get(service, service))
    operation = pascal(command)
    assert operation in model.operation_names, f"{guide}: aws {service} {command}: no operation {operation}"
    if arguments[:1] == ["--cli-input-json"]:  # the whole request from a file
        check_file(arguments[1].removeprefix("file://"), model.operation_model(operation).input_shape, command)
        return
    # the CLI's option is the member's name in kebab case, whatever the model's capitalisation
    members = {name.lower(): shape for name, shape in model.operation_model(operation).input_shape.members.items()}
    for position, argument in enumerate(arguments):
        if not argument.startswith("--") or argument in GLOBAL_OPTIONS:
            continue
        member = pascal(argument).lower()
        assert member in members, f"aws {service} {command}: {argument} is no parameter of {operation}"
        value = arguments[position + 1] if position + 1 < len(arguments) else ""
        shape = members[member]
        if value.startswith("file://"):
            check_file(value.removeprefix("file://"), shape, f"{service} {command} {argument}")
        elif shape.type_name == "structure" and "=" in value:  # shorthand: Key=value,Key=value
            keys = {pair.split("=", 1)[0] for pair in value.split(",")}
            assert keys <= set(shape.members), f"{argument}: {sorted(keys - set(shape.members))} unknown"


def check_file(path: str, shape: Any, where: str) -> None:
    if path in written_files():
        return  # made by an earlier step (from a file of the repository, checked there)
    assert (REPO / path).is_file(), f"{where}: file://{path} is neither in the repository nor written before"
    content = json_file(REPO / path)
    if shape.type_name == "structure":
        report = ParamValidator().validate(content, shape)
        assert not report.has_errors(), f"{where}: {report.generate_report()}"
    else:
        assert json.loads(json.dumps(content))["Statement"], f"{where}: {path} is no policy document"


@pytest.mark.parametrize("guide", GUIDES, ids=lambda path: path.name)
def test_the_files_a_guide_names_come_from_the_repository(guide):
    sources = {match for command in commands(guide) for match in re.findall(r"(deploy/[\w./-]+\.json)", command)}
    assert sources and all((REPO / source).is_file() for source in sources), sources
    for command in commands(guide):
        for written in re.findall(r">\s*([\w.-]+\.json)", command):
            assert not (REPO / written).exists()  # written in the reader's directory, not over ours


def merged(defaults: Any, override: Any) -> Any:
    """Values as helm merges a values file over the chart's defaults (maps deeply, the rest replaced)."""
    if isinstance(defaults, dict) and isinstance(override, dict):
        return {
            key: merged(defaults.get(key), override[key]) if key in override else defaults[key]
            for key in defaults.keys() | override.keys()
        }
    return override


@pytest.mark.parametrize(
    ("guide", "name"), [(GUIDE, "orders-values.yaml"), (KCL_GUIDE, "orders-kcl-values.yaml")], ids=["eks", "kcl"]
)
def test_the_values_file_passes_the_schema_and_renders_strictly_valid_objects(guide, name):
    values = values_file(guide, name)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(json_file(CHART / "values.schema.json")).validate(merged(defaults, values))
    for document in rendered(values):
        validate_strictly(document)


def test_the_names_the_later_steps_use_are_the_ones_the_chart_renders():
    values = values_file()
    objects = rendered({**values, "jobs": {**values["jobs"], "backfill": {"enabled": True}}})
    names = {f"{document['kind'].lower()}/{document['metadata']['name']}" for document in objects}
    used = {match for command in commands() for match in re.findall(r"\b((?:deployment|job)/[\w-]+)", command)}
    assert used and used <= names, sorted(used - names)
    # the trust policies name the service accounts the chart creates, in the guide's namespace
    accounts = {document["metadata"]["name"] for document in of_kind(objects, "ServiceAccount")}
    trusted = {match for command in commands() for match in re.findall(r"system:serviceaccount:cdc:([\w-]+)", command)}
    irsa = json_file(REPO / "deploy" / "iam" / "trust" / "irsa.json")
    assert "system:serviceaccount:cdc:cdc-consumer" in json.dumps(irsa)
    assert {"cdc-consumer", "cdc-consumer-operator"} == accounts and trusted <= accounts
    assert "NAMESPACE=cdc" in GUIDE.read_text()
    # the Pod Identity association names the workers' service account
    (association,) = [args for service, command, args in aws_calls() if command == "create-pod-identity-association"]
    assert association[association.index("--service-account") + 1] in accounts
    assert Path(CHART).is_dir()


def test_the_kcl_page_names_the_lease_table_its_policy_grants_and_the_chart_writes():
    values = values_file(KCL_GUIDE, "orders-kcl-values.yaml")
    (daemon,) = [
        document["data"]["daemon.properties"]
        for document in of_kind(rendered(values), "ConfigMap")
        if "daemon.properties" in document.get("data", {})
    ]
    assert f"applicationName = {values['leaseTable']}" in daemon.splitlines()
    granted = json_file(REPO / "deploy" / "iam" / "policy.kcl.json")["Statement"]
    (tables,) = [statement["Resource"] for statement in granted if statement["Sid"] == "KclTables"]
    assert f"arn:aws:dynamodb:eu-west-1:123456789012:table/{values['leaseTable']}" in tables
    # the commands that look at the lease table and the KCL's metrics name the same table
    looked_at = {args[args.index("--table-name") + 1] for _, command, args in aws_calls(KCL_GUIDE) if command == "scan"}
    namespaces = {
        args[args.index("--namespace") + 1] for _, command, args in aws_calls(KCL_GUIDE) if "--namespace" in args
    }
    assert looked_at == namespaces == {values["leaseTable"]}
